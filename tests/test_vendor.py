"""scripts/vendor.py copies htmx out of the npm tarballs package-lock.json pins, and refuses a
tarball, a lockfile or a package.json that does not match, copying nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .server import ROOT
from .test_wheel import vendor_script

vendor = vendor_script()


def project(tmp_path: Path) -> Path:
    """A copy of the checkout's package.json and package-lock.json, to spoil."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / name, root / name)
    return root


def edit_json(path: Path, change: object) -> None:
    value = json.loads(path.read_text())
    change(value)  # type: ignore[operator]
    path.write_text(json.dumps(value))


def test_the_copied_scripts_are_the_locked_tarballs_files(tmp_path: Path) -> None:
    root = project(tmp_path)
    lines = vendor.vendor(tmp_path / "vendor", root)
    assert len(lines) == 2
    htmx = (tmp_path / "vendor/htmx.min.js").read_bytes()
    version = vendor.locked("htmx.org", root).version
    assert f'version:"{version}"'.encode() in htmx
    assert b'htmx.defineExtension("sse"' in (tmp_path / "vendor/sse.min.js").read_bytes()
    # The checkout serves the same files (make put them there the same way).
    for script in vendor.SCRIPTS:
        copied = (tmp_path / "vendor" / script.name).read_bytes()
        assert copied == (ROOT / "chatapp/static/vendor" / script.name).read_bytes()


def test_a_tarball_whose_sha512_differs_from_the_lockfile_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)
    locked = vendor.locked("htmx.org", root)
    wrong = vendor.sha512_integrity(b"not the tarball")

    def spoil(lock: dict) -> None:
        lock["packages"]["node_modules/htmx.org"]["integrity"] = wrong

    edit_json(root / "package-lock.json", spoil)
    with pytest.raises(vendor.VendorError) as refused:
        vendor.vendor(tmp_path / "vendor", root)
    message = str(refused.value)
    assert f"htmx.org {locked.version}" in message and wrong in message
    assert locked.integrity in message  # what the tarball really has
    assert not (tmp_path / "vendor" / "htmx.min.js").exists()


def test_package_json_and_the_lockfile_must_agree(tmp_path: Path) -> None:
    root = project(tmp_path)

    def other_version(package: dict) -> None:
        package["dependencies"]["htmx-ext-sse"] = "2.2.3"

    edit_json(root / "package.json", other_version)
    with pytest.raises(vendor.VendorError, match="run `npm install` so that they agree"):
        vendor.locked("htmx-ext-sse", root)


def test_a_lockfile_without_sha512_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)

    def weaker(lock: dict) -> None:
        lock["packages"]["node_modules/htmx.org"]["integrity"] = "sha1-abc="

    edit_json(root / "package-lock.json", weaker)
    with pytest.raises(vendor.VendorError, match="no sha512 integrity for htmx.org"):
        vendor.locked("htmx.org", root)
    (root / "package-lock.json").write_text("{")
    with pytest.raises(vendor.VendorError, match="not valid JSON"):
        vendor.locked("htmx.org", root)
