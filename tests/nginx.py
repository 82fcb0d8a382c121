"""Debian's nginx in front of a test server, with `deploy/nginx/chatapp.conf` as the site.

`nginx_in_front(...)` takes the sample as shipped and changes only what a sysadmin changes: the
upstream's port (the test server's), the listen ports (free ones, on loopback) and the
certificate paths (a self-signed certificate for `localhost`, made here with openssl). Around
it goes a main configuration with the http settings of Debian's own `nginx.conf`, plus what a
child process of the test needs: no daemon, its own prefix, pid file, logs and temporary
directories in the test's tmp directory. nginx runs in the foreground as a child of the test
and is stopped after the block.

`alter=` changes the site once the sysadmin has, for the copies that show a test can fail
(`buffering_forced_on`, `host_without_port`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .server import HOST, free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "deploy" / "nginx" / "chatapp.conf"


def nginx_binary() -> str | None:
    """Where nginx is (Debian puts it in /usr/sbin, which may not be on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def missing_nginx() -> str | None:
    """Why the nginx tests cannot run here, or None if they can."""
    if nginx_binary() is None:
        return (
            "nginx is not installed; the test of deploy/nginx/chatapp.conf needs it. Install it "
            "with `make nginx` (`make test` does this)."
        )
    if shutil.which("openssl") is None:
        return "openssl is not installed; the nginx test makes its certificate with it."
    return None


@dataclass
class Nginx:
    """A running nginx: the page's address, its ports, and where it wrote what."""

    url: str  # https://localhost:PORT, the address people type
    https_port: int
    http_port: int
    directory: Path
    site: str  # the site configuration it runs
    test_output: str = ""  # what `nginx -t` said about it

    def error_log(self) -> str:
        return _read(self.directory / "logs" / "error.log")

    def access_log(self) -> str:
        return _read(self.directory / "logs" / "access.log")


class NginxError(RuntimeError):
    """nginx refused the configuration or did not start; the message carries its output."""


# -- the sysadmin's copy of the sample ------------------------------------------------------------


def sysadmin_copy(
    sample: str,
    *,
    upstream_port: int,
    http_port: int,
    https_port: int,
    certificate: Path,
    key: Path,
    ipv6: bool,
) -> str:
    """The sample with the upstream port, listen ports and certificate paths changed.

    The listen lines keep their form (`ssl http2`, or `ssl` with `http2 on;` on nginx 1.25+)
    and move to loopback; the IPv6 ones are left out where the machine has no IPv6. The plain
    HTTP server's redirect names the HTTPS port, as the sample's comment asks for a port other
    than 443.
    """
    steps: list[tuple[str, str]] = [
        (r"(?m)^(\s*server\s+)127\.0\.0\.1:8000;", rf"\g<1>127.0.0.1:{upstream_port};"),
        (r"(?m)^(\s*listen\s+)80;", rf"\g<1>{HOST}:{http_port};"),
        (r"(?m)^(\s*listen\s+)443(\s[^;]*)?;", rf"\g<1>{HOST}:{https_port}\g<2>;"),
        (
            r"(?m)^(\s*listen\s+)\[::\]:80;\n",
            rf"\g<1>[::1]:{http_port};\n" if ipv6 else "",
        ),
        (
            r"(?m)^(\s*listen\s+)\[::\]:443(\s[^;]*)?;\n",
            rf"\g<1>[::1]:{https_port}\g<2>;\n" if ipv6 else "",
        ),
        (
            r"return 301 https://\$host\$request_uri;",
            f"return 301 https://$host:{https_port}$request_uri;",
        ),
        (r"(?m)^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{certificate};"),
        (r"(?m)^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};"),
    ]
    site = sample
    for pattern, replacement in steps:
        site, count = re.subn(pattern, replacement, site)
        if count != 1:
            raise AssertionError(
                f"the sample has {count} lines matching {pattern!r} (expected one): the test's "
                "sysadmin no longer knows what to change in deploy/nginx/chatapp.conf"
            )
    return site


def buffering_forced_on(site: str) -> str:
    """Buffering on in the stream locations, and the app's `X-Accel-Buffering: no` ignored."""
    site, count = re.subn(
        r"proxy_buffering off;",
        "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;",
        site,
    )
    assert count == 2, f"expected proxy_buffering off in the two stream locations, found {count}"
    return site


def host_without_port(site: str) -> str:
    """The sample as it was: `Host $host`, which drops a port other than 443."""
    site, count = re.subn(r"proxy_set_header Host \S+;", "proxy_set_header Host $host;", site)
    assert count == 1, f"expected one `proxy_set_header Host`, found {count}"
    return site


# -- running it -----------------------------------------------------------------------------------

# The http settings of Debian's /etc/nginx/nginx.conf (gzip on among them), around the site.
_MAIN = """\
{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log notice;

events {{
    worker_connections 768;
}}

http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {directory}/logs/access.log;
    gzip on;

    client_body_temp_path {directory}/temp/body;
    proxy_temp_path {directory}/temp/proxy;
    fastcgi_temp_path {directory}/temp/fastcgi;
    uwsgi_temp_path {directory}/temp/uwsgi;
    scgi_temp_path {directory}/temp/scgi;

    include {directory}/sites-enabled/chatapp.conf;
}}
"""


def make_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "2", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def check_configuration(directory: Path) -> str:
    """`nginx -t` on the configuration in `directory`; its output (it fails on an error)."""
    result = subprocess.run(
        [_nginx(), "-t", "-p", str(directory), "-c", str(directory / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise NginxError(f"nginx -t failed with exit code {result.returncode}:\n{output}")
    return output


def configure(
    directory: Path,
    upstream_url: str,
    *,
    alter: Callable[[str], str] | None = None,
) -> Nginx:
    """Write the sysadmin's copy of the sample (then `alter`), a certificate and the main
    configuration into `directory`, on free ports; nothing runs yet."""
    for part in ("logs", "temp", "sites-enabled"):
        (directory / part).mkdir(parents=True, exist_ok=True)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    if not cert.exists():
        make_certificate(cert, key)
    http_port, https_port = free_port(), free_port()
    while https_port == http_port:
        https_port = free_port()
    site = sysadmin_copy(
        SAMPLE.read_text(),
        upstream_port=int(upstream_url.rsplit(":", 1)[1]),
        http_port=http_port,
        https_port=https_port,
        certificate=cert,
        key=key,
        ipv6=_ipv6_loopback(),
    )
    if alter is not None:
        site = alter(site)
    (directory / "sites-enabled" / "chatapp.conf").write_text(site)
    # As root, the worker would switch to nobody, who cannot enter the test's tmp directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(_MAIN.format(user=user, directory=directory))
    return Nginx(
        url=f"https://localhost:{https_port}",
        https_port=https_port,
        http_port=http_port,
        directory=directory,
        site=site,
    )


@contextmanager
def nginx_in_front(
    tmp_path: Path,
    upstream_url: str,
    *,
    alter: Callable[[str], str] | None = None,
    start_timeout: float = 20.0,
) -> Iterator[Nginx]:
    """Run nginx with the sysadmin's copy of the sample (then `alter`) in front of `upstream_url`.

    `nginx -t` checks the configuration first; the running nginx's `test_output` is what it said.
    """
    directory = tmp_path / "nginx"
    for attempt in range(3):
        running = configure(directory, upstream_url, alter=alter)
        running.test_output = check_configuration(directory)
        process, output = _start(directory)
        try:
            if _wait_until_answering(process, running, start_timeout):
                break
            code = _stop(process)
            log = _read(output) + running.error_log()
            if "Address already in use" in log and attempt < 2:
                continue  # someone took a port between our probe and nginx's bind
            raise NginxError(f"nginx did not answer on {running.url} (exit code {code}):\n{log}")
        except BaseException:
            _stop(process)
            raise
    try:
        yield running
    except BaseException:
        print(
            f"----- nginx error log: {directory / 'logs'} -----\n{running.error_log()}\n"
            f"----- nginx output -----\n{_read(output)}\n----- end of nginx output -----",
            file=sys.stderr,
        )
        raise
    finally:
        _stop(process)


def _nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        raise NginxError(missing_nginx() or "nginx is not installed")
    return binary


def _start(directory: Path) -> tuple[subprocess.Popen[bytes], Path]:
    output = directory / "logs" / "nginx.out"
    with output.open("ab") as log:
        process = subprocess.Popen(
            [_nginx(), "-p", str(directory), "-c", str(directory / "nginx.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that a last-resort kill also reaches the worker.
            start_new_session=True,
        )
    return process, output


def _wait_until_answering(process: subprocess.Popen[bytes], running: Nginx, timeout: float) -> bool:
    """True once nginx answers HTTPS (whatever the answer); False if it exited."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            url = running.url + "/static/app.css"
            with urllib.request.urlopen(url, timeout=2.0, context=context) as response:
                response.read()
            return True
        except urllib.error.HTTPError as error:
            error.close()  # it holds the answer's socket
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM (nginx's fast shutdown), wait, then kill the whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return process.wait()


def _ipv6_loopback() -> bool:
    """Whether this machine can listen on ::1 (containers often have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
