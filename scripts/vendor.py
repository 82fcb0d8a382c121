"""Copy htmx and its SSE extension into chatapp/static/vendor, checked against the lockfile.

    python3 scripts/vendor.py [DIRECTORY]      # default: chatapp/static/vendor

For each browser package that package-lock.json pins, `npm pack NAME@VERSION` fetches the
package's tarball (from npm's cache, else the registry npm is configured with). The tarball's
sha512 must equal the lockfile's `integrity`; only then is the one file chatapp serves read
out of it. npm is needed here, where the app or its wheel is built, never on a server that
installs the wheel. Only the standard library is used, so any python3 runs this.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "chatapp" / "static" / "vendor"


@dataclass(frozen=True)
class Script:
    """A file chatapp serves from an npm package: where it is in the tarball, what we call it."""

    package: str
    member: str
    name: str


SCRIPTS = (
    Script("htmx.org", "package/dist/htmx.min.js", "htmx.min.js"),
    Script("htmx-ext-sse", "package/dist/sse.min.js", "sse.min.js"),
)


class VendorError(Exception):
    """The lockfile, npm or a tarball is not what it must be; the message says what to do."""


@dataclass(frozen=True)
class Locked:
    """A package as package-lock.json pins it."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>"


def locked(package: str, root: Path = ROOT) -> Locked:
    """The version and sha512 that package-lock.json pins for `package`, which package.json
    must name at that exact version."""
    lock = _read_json(root / "package-lock.json")
    wanted = _read_json(root / "package.json").get("dependencies", {})
    entry = lock.get("packages", {}).get(f"node_modules/{package}")
    if not entry:
        raise VendorError(
            f"package-lock.json has no entry for {package}; run `npm install` to update it."
        )
    version = entry.get("version", "")
    if wanted.get(package) != version:
        raise VendorError(
            f"package.json asks for {package} {wanted.get(package)!r} but package-lock.json "
            f"pins {version!r}; run `npm install` so that they agree."
        )
    integrity = entry.get("integrity", "")
    if not integrity.startswith("sha512-"):
        raise VendorError(
            f"package-lock.json has no sha512 integrity for {package} {version} "
            f"(found {integrity!r}); run `npm install` to record it."
        )
    return Locked(package, version, integrity)


def sha512_integrity(data: bytes) -> str:
    """The Subresource Integrity string npm writes in lockfiles: `sha512-` and base64."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def fetch_tarball(package: Locked, directory: Path) -> bytes:
    """The package's tarball, by `npm pack`, once its sha512 equals the lockfile's."""
    try:
        packed = subprocess.run(
            [
                "npm",
                "pack",
                f"{package.name}@{package.version}",
                "--pack-destination",
                str(directory),
                "--json",
                "--ignore-scripts",
                "--loglevel=error",
            ],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except FileNotFoundError:
        raise VendorError(
            "npm is not installed. It is needed where chatapp or its wheel is built (install "
            "Node.js with npm), never on the server that installs the wheel."
        ) from None
    if packed.returncode != 0:
        raise VendorError(
            f"`npm pack {package.name}@{package.version}` failed (exit code "
            f"{packed.returncode}):\n{packed.stderr.strip()}"
        )
    try:
        filename = json.loads(packed.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        raise VendorError(
            f"`npm pack {package.name}@{package.version}` did not say which file it wrote:\n"
            f"{packed.stdout.strip()}"
        ) from None
    data = (directory / filename).read_bytes()
    found = sha512_integrity(data)
    if found != package.integrity:
        raise VendorError(
            f"{package.name} {package.version}: the tarball npm fetched has {found}, but "
            f"package-lock.json pins {package.integrity}. Nothing was copied. Check the "
            "registry npm uses (`npm config get registry`) and its cache (`npm cache verify`)."
        )
    return data


def read_member(tarball: bytes, member: str, label: str) -> bytes:
    """One regular file of a tarball, by its exact path."""
    import io

    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        try:
            info = archive.getmember(member)
        except KeyError:
            raise VendorError(f"{label} has no {member}.") from None
        handle = archive.extractfile(info) if info.isfile() else None
        if handle is None:
            raise VendorError(f"{label}: {member} is not a regular file.")
        return handle.read()


def package_file(script: Script, root: Path = ROOT) -> bytes:
    """The file `script` names, from the tarball package-lock.json pins, integrity checked."""
    return _checked_file(script, locked(script.package, root))


def _checked_file(script: Script, package: Locked) -> bytes:
    with tempfile.TemporaryDirectory(prefix="chatapp-vendor-") as scratch:
        tarball = fetch_tarball(package, Path(scratch))
    return read_member(tarball, script.member, f"{package.name} {package.version}")


def vendor(directory: Path, root: Path = ROOT) -> list[str]:
    """Write every script into `directory`; return a line about each."""
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    for script in SCRIPTS:
        package = locked(script.package, root)
        data = _checked_file(script, package)
        target = directory / script.name
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, target)  # a reader never sees half a file
        done.append(
            f"{target}: {script.member} of {package.name} {package.version} "
            "(sha512 as in package-lock.json)"
        )
    return done


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise VendorError(f"{path} is missing.") from None
    except ValueError as exc:
        raise VendorError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise VendorError(f"{path} does not hold a JSON object.")
    return value


def main(argv: list[str]) -> int:
    directory = Path(argv[1]) if len(argv) > 1 else VENDOR
    try:
        for line in vendor(directory):
            print(line)
    except VendorError as exc:
        print(f"scripts/vendor.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
