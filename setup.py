"""setuptools: the metadata is in setup.cfg. A wheel also ships the migrations, in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithMigrations(build_py):
    """Copy `migrations/` (Alembic's scripts, kept at the top of the checkout) into the built
    package as `chatapp/migrations`, where an installed chatapp looks for them."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's migrations/
        target = Path(self.build_lib) / "chatapp" / "migrations"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            ROOT / "migrations", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


setup(cmdclass={"build_py": BuildWithMigrations})
