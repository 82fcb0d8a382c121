"""The wheel of `make dist` runs chatapp on a server that has no Node: into a fresh virtualenv
from the package index, `chatapp db upgrade`, then gunicorn with the config in the package.

Nothing of the checkout is reachable from the installed app: it runs from an empty directory
with a PATH of the virtualenv's bin/ only (no npm, no node, not the checkout's .venv), and the
htmx it serves must be, byte for byte, the file of the npm tarball that package-lock.json pins.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from bs4 import BeautifulSoup

from .conftest import USER_HEADER
from .server import HOST, ROOT, _database, free_port

USER = "wheel-admin"
# Variables of the developer's shell that the server must not see (besides CHATAPP_* and the
# like); PATH is replaced by the virtualenv's bin/.
LEFT_BEHIND = {
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
    "PATH",
}
PASSWORD = "a long enough password, typed once"

# What a wheel must hold besides the Python modules (paths inside it).
SHIPPED = [
    "chatapp/static/vendor/htmx.min.js",
    "chatapp/static/vendor/sse.min.js",
    "chatapp/static/app.css",
    "chatapp/static/app.js",
    "chatapp/templates/base.html",
    "chatapp/templates/conversation.html",
    "chatapp/migrations/alembic.ini",
    "chatapp/migrations/env.py",
    "chatapp/migrations/script.py.mako",
    "chatapp/wsgi.py",
    "chatapp/gunicorn_conf.py",
    *(f"chatapp/migrations/versions/{p.name}" for p in (ROOT / "migrations/versions").glob("*.py")),
]


def vendor_script() -> ModuleType:
    """scripts/vendor.py, which fetches npm tarballs and checks them against the lockfile."""
    spec = importlib.util.spec_from_file_location("chatapp_vendor", ROOT / "scripts/vendor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300.0,
) -> str:
    """Run a command to its end; its output, or a failure that shows it."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return output


def server_environment(venv: Path, instance: Path, database_url: str | None) -> dict[str, str]:
    """The environment of a server that has the virtualenv and nothing else of ours."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CHATAPP_", "PYTHON", "VIRTUAL_ENV", "FLASK_", "GUNICORN_"))
        and key not in LEFT_BEHIND
    }
    env.update(
        PATH=str(venv / "bin"),
        CHATAPP_INSTANCE_PATH=str(instance),
        CHATAPP_TRUSTED_USER_HEADER=USER_HEADER,
        CHATAPP_TRUSTED_PROXIES=HOST,
        CHATAPP_TITLE_MODEL="",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={USER_HEADER: USER})
    with urllib.request.urlopen(request, timeout=10.0) as response:
        assert response.status == 200, url
        body: bytes = response.read()
        return body


def wait_until_answering(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gunicorn exited:\n{log.read_text(errors='replace')}"
        try:
            fetch(url + "/healthz")
            return
        except urllib.error.HTTPError as error:
            error.close()  # it holds the answer's socket
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gunicorn did not answer on {url}:\n{log.read_text(errors='replace')}")


def test_gunicorns_master_imports_no_library_before_the_workers_patch() -> None:
    """gunicorn's master imports the config module; its gevent workers patch the standard
    library only after the fork. ssl imported before the patch can break TLS to the API."""
    check = (
        "import sys, chatapp.gunicorn_conf; "
        "print(sorted({'ssl', 'socket', 'threading', 'flask', 'gevent'} & set(sys.modules)))"
    )
    imported = run([sys.executable, "-c", check], cwd=ROOT)
    assert imported.strip() == "[]", imported


@pytest.mark.slow
def test_the_wheel_installs_and_serves_htmx_without_node(tmp_path: Path) -> None:
    # Build: `make dist`, as a release would (npm is needed here, and only here).
    dist = tmp_path / "dist"
    run(["make", "dist", f"DIST={dist}"], cwd=ROOT, timeout=600.0)
    wheels = sorted(dist.glob("chatapp-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        shipped_app_js = wheel.read("chatapp/static/app.js") if SHIPPED[3] in names else b""
    assert [name for name in SHIPPED if name not in names] == []
    assert not [n for n in names if n.startswith(("tests/", "node_modules/", "bench/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".installed")]

    # Install: a fresh virtualenv, dependencies from the package index.
    server_dir = tmp_path / "server"  # the current directory of everything installed
    server_dir.mkdir()
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=server_dir)
    instance = tmp_path / "instance"
    with _database(tmp_path, None) as url:
        database_url = url if url.startswith("postgresql") else None
        env = server_environment(venv, instance, database_url)
        run([venv / "bin/pip", "install", "--quiet", wheels[0]], cwd=server_dir, env=env)
        assert shutil.which("npm", path=env["PATH"]) is None
        assert shutil.which("node", path=env["PATH"]) is None
        located = run(
            [venv / "bin/python", "-c", "import chatapp; print(chatapp.__file__)"],
            cwd=server_dir,
            env=env,
        )
        assert Path(located.strip()).is_relative_to(venv), located

        # Without CHATAPP_INSTANCE_PATH, Flask's rule for an installed package holds.
        default_env = {k: v for k, v in env.items() if k != "CHATAPP_INSTANCE_PATH"}
        default_env["SECRET_KEY"] = "unused"  # nothing is written there
        where = "import chatapp; print(chatapp.create_app().instance_path)"
        default = run(
            [venv / "bin/python", "-c", where],
            cwd=server_dir,
            env=default_env,
        )
        assert default.strip() == str(venv / "var" / "chatapp-instance")

        # The `chatapp` command: migrations and accounts, with no checkout around.
        migrated = run([venv / "bin/chatapp", "db", "upgrade"], cwd=server_dir, env=env)
        assert "Running upgrade" in migrated
        run(
            [venv / "bin/chatapp", "users", "create", USER, "--admin"],
            cwd=server_dir,
            env=env,
            stdin=PASSWORD + "\n",
        )
        assert USER in run([venv / "bin/chatapp", "users", "list"], cwd=server_dir, env=env)
        # The instance folder is the one named: the secret key (and SQLite's file) are there.
        assert (instance / "secret_key").is_file()
        if database_url is None:
            assert (instance / "chatapp.sqlite").is_file()

        # Serve: gunicorn with the config the package ships.
        port = free_port()
        log = tmp_path / "gunicorn.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [
                    str(venv / "bin/gunicorn"),
                    "--config",
                    "python:chatapp.gunicorn_conf",
                    "chatapp.wsgi:app",
                ],
                cwd=server_dir,
                env={**env, "HOST": HOST, "PORT": str(port)},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            base = f"http://{HOST}:{port}"
            wait_until_answering(process, base, log)
            page = BeautifulSoup(fetch(base + "/"), "html.parser")
            assert page.find(attrs={"aria-label": "Conversations"}) is not None  # signed in
            sources = {tag["src"] for tag in page.find_all("script", src=True)}
            vendor = vendor_script()
            for script in vendor.SCRIPTS:
                src = f"/static/vendor/{script.name}"
                assert src in sources, sources
                assert fetch(base + src) == vendor.package_file(script), src
            assert fetch(base + "/static/app.js") == shipped_app_js
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
        served = log.read_text(errors="replace")
        assert code == 0, served
        assert "Booting worker" in served and "gevent" in served.lower(), served
        assert "MonkeyPatchWarning" not in served, served
