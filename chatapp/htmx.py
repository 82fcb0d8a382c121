"""The one place that knows HTMX's request and response headers."""

from __future__ import annotations

from flask import Request, Response


def is_htmx(request: Request) -> bool:
    """True when HTMX made the request, so a fragment is the answer, not a page."""
    return request.headers.get("HX-Request") == "true"


def vary_on_htmx(response: Response) -> Response:
    """The one rule for caches: every HTML response may differ for HTMX and plain requests
    (a fragment or a page, a notice or an error page), so every one says `Vary: HX-Request`.
    An `after_request` hook of the app; no view sets it itself."""
    if response.mimetype == "text/html":
        response.vary.add("HX-Request")
    return response


def retarget(response: Response, target: str, swap: str = "innerHTML") -> Response:
    """Swap the response into `target` instead of the element's own target."""
    response.headers["HX-Retarget"] = target
    response.headers["HX-Reswap"] = swap
    return response


def push_url(response: Response, url: str) -> Response:
    """Put `url` in the address bar and history, as if the page had been loaded there."""
    response.headers["HX-Push-Url"] = url
    return response


def redirect(response: Response, url: str) -> Response:
    """Make the browser load `url` as a whole page (the fragment, if any, is not swapped)."""
    response.headers["HX-Redirect"] = url
    return response
