"""Headers every response carries, so a browser holds the pages to what they are.

- Content-Security-Policy (CHATAPP_CONTENT_SECURITY_POLICY): scripts, styles, images and
  connections from this site only, no inline script or style, no plugins, forms post here
  only, and no other site may frame a page (`frame-ancestors 'none'`). The pages need nothing
  more: every script is a file in static/, htmx's own inline indicator style is switched off
  (`includeIndicatorStyles: false` in base.html), and model output is sanitized to carry no
  script, style or handler at all. Should anything slip through, the browser refuses it.
- X-Content-Type-Options: nosniff, so a download is never run as a script or a page.
- Referrer-Policy: same-origin, so the address of a conversation never leaves the site with a
  link someone follows (Flask-WTF still gets the Referer it checks on https form posts).
- Strict-Transport-Security on responses that came over https (CHATAPP_HSTS_SECONDS), so the
  browser never tries plain http for this site again. Over http it would mean nothing.
"""

from __future__ import annotations

from flask import Flask, Response, request


def init_app(app: Flask) -> None:
    policy = str(app.config["CONTENT_SECURITY_POLICY"] or "")
    hsts_seconds = int(app.config["HSTS_SECONDS"] or 0)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        if policy:
            headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if hsts_seconds and request.is_secure:
            headers.setdefault("Strict-Transport-Security", f"max-age={hsts_seconds}")
        return response
