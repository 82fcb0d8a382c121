"""Security headers (issue 16): every response carries a Content-Security-Policy that the pages
work under, nosniff, a same-origin Referrer-Policy, and HSTS when it came over https; no page
has inline script, style or handlers; and real Chromium sees no policy violation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .browser import RemoteBrowser, started_browser
from .conftest import Configure, html, read_events, send, stream_url
from .server import AppServer, app_server

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "chatapp" / "templates"

# An answer with every kind of block the renderer makes: code (highlighted), a table with
# aligned columns, a list, a quote, a link and an image (shown as a link).
ANSWER = (
    "## Heading\n\nSome **bold** and `code`.\n\n```python\nprint('hi')\n```\n\n"
    "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n- one\n- two\n\n> quoted\n\n"
    "[a link](https://example.com) ![an image](https://images.example/x.png)\n"
)


def directives(policy: str) -> dict[str, str]:
    return {
        part.split()[0]: " ".join(part.split()[1:])
        for part in (p.strip() for p in policy.split(";"))
        if part
    }


@pytest.fixture
def conversation(app: Flask, client: FlaskClient, upstream: FakeUpstream) -> int:
    upstream.push(Scenario(text=ANSWER, thinking="Thinking first."))
    fragment = send(client, "Show me everything")
    read_events(client, stream_url(fragment))
    return int(fragment.select_one("#conversation-id")["value"])


def pages(app: Flask, conversation: int) -> dict[str, FlaskClient]:
    admin = app.test_client(user="root")
    with app.app_context():
        from chatapp.auth import accounts

        root = accounts.find("root") or accounts.create("root", None)
        accounts.set_admin(root, True)
    alice = app.test_client()
    return {
        "/": alice,
        f"/conversations/{conversation}": alice,
        "/search?q=everything": alice,
        "/connection-check": alice,
        "/admin/users": admin,
        "/admin/usage": admin,
        "/conversations/999999": alice,  # the error page
    }


def test_every_page_carries_the_headers(app: Flask, conversation: int) -> None:
    for path, client in pages(app, conversation).items():
        response = client.get(path)
        assert response.status_code in (200, 404), path
        headers = response.headers
        policy = directives(headers["Content-Security-Policy"])
        assert policy["frame-ancestors"] == "'none'", path
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
        assert "unsafe" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in headers  # plain http


def test_streams_exports_and_fragments_carry_them_too(
    app: Flask, client: FlaskClient, conversation: int
) -> None:
    for path, headers in (
        (f"/conversations/{conversation}/export.md", {}),
        (f"/conversations/{conversation}/title", {"HX-Request": "true"}),
        ("/healthz", {}),
    ):
        response = client.get(path, headers=headers)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    stream = client.get(f"/conversations/{conversation}/events", buffered=False)
    assert stream.headers["X-Content-Type-Options"] == "nosniff"
    stream.close()


def test_hsts_only_when_the_request_came_over_https(configured: Configure) -> None:
    app = configured(PROXY_COUNT=1)
    client = app.test_client()
    secure = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/").headers
    # Straight to the server over https (no proxy) counts too.
    assert "Strict-Transport-Security" in client.get("/", base_url="https://localhost").headers
    # A client's own X-Forwarded-Proto, with no proxy configured, is not believed.
    plain = configured()
    forged = plain.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in forged.headers


def test_no_page_has_inline_script_style_or_handlers(app: Flask, conversation: int) -> None:
    for path, client in pages(app, conversation).items():
        page = html(client.get(path).data)
        inline = [str(s)[:80] for s in page.find_all("script") if not s.get("src")]
        assert inline == [], path
        assert page.find_all("style") == [], path
        for element in page.find_all(True):
            bad = [a for a in element.attrs if a == "style" or a.startswith(("on", "hx-on"))]
            assert bad == [], f"{path}: <{element.name} {bad}>"
        # htmx's indicator style would be an inline <style>: it is switched off.
        config = page.select_one('meta[name="htmx-config"]')
        assert '"includeIndicatorStyles":false' in str(config["content"])


def test_no_template_has_inline_script_style_or_handlers() -> None:
    for template in sorted(TEMPLATES.glob("*.html")):
        source = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", source), template.name
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|hx-on|javascript:", source), (
            template.name
        )


# -- real Chromium, with the policy on ----------------------------------------------------------

QUICK = Pace(first_token_seconds=(0.1, 0.1), tokens_per_second=(400.0, 400.0), ping_seconds=1.0)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(QUICK, seed=16)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[AppServer]:
    from .server import USER

    env = {"CHATAPP_HEARTBEAT_SECONDS": "1", "CHATAPP_ADMINS": USER}
    with app_server(tmp_path_factory.mktemp("csp"), upstream=fake, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, server: AppServer) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path_factory.mktemp("browser")) as remote:
        yield remote


DONE = """
() => {
  const articles = document.querySelectorAll('article[data-role="assistant"]');
  const last = articles[articles.length - 1];
  return last && last.dataset.status === "complete" ? last.id : null;
}
"""


def test_chromium_sees_no_policy_violation(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser
) -> None:
    fake.push(Scenario(text=ANSWER, thinking="Thinking first."))
    browser.open("chat", server.url + "/")
    browser.send("chat", "Show me everything")
    answer = browser.wait_for("chat", DONE)
    browser.click("chat", f"#{answer} .code__copy")  # our script runs under the policy
    browser.wait_for("chat", "() => document.querySelector('.code__copy').textContent !== 'Copy'")
    browser.reload("chat")
    browser.wait_for("chat", DONE)
    for path in ("/connection-check", "/admin/users", "/admin/usage", "/search?q=everything"):
        browser.open("other", server.url + path)
        browser.wait_for("other", "() => document.readyState === 'complete'")
        assert browser.errors("other") == [], path
    assert browser.errors("chat") == []
    assert browser.evaluate("chat", "() => window.__cspViolations.length") == 0

    # The check can fail: what the policy forbids is reported, and not run.
    browser.evaluate(
        "chat",
        """() => {
          const holder = document.createElement("div");
          holder.innerHTML = '<img src="https://images.example/x.png"><p style="color: red">x</p>';
          document.body.appendChild(holder);
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.appendChild(script);
        }""",
    )
    browser.wait_for("chat", "() => window.__cspViolations.length >= 3")
    assert browser.evaluate("chat", "() => window.__ran === undefined")
    blocked = {v["directive"] for v in browser.evaluate("chat", "() => window.__cspViolations")}
    assert {"img-src", "style-src-attr", "script-src-elem"} <= blocked, blocked
    assert any("CSP violation" in e["text"] for e in browser.errors("chat"))
