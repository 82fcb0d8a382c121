"""Sharing a conversation: Share, the owner's page for each share, the shared page and its
files, Continue in my chats, and the admins' list of every share.

The shared page sends nothing that changes anything except Continue in my chats (a form with
its CSRF token); it links nowhere into the owner's conversation, whose every route still
answers 404 to anyone else.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from .. import htmx
from ..attachments.views import file_response
from ..auth import signed_in_user
from ..conversations import store as conversations
from ..cooperate import let_streams_run
from ..llm.catalogue import catalogue
from ..models import Share
from ..render import is_kept, render_answer
from ..streaming import live_view
from . import store

bp = Blueprint("sharing", __name__)

# A shared page is never kept by a cache (a stopped link must stop at once), and its address,
# which is its key, never leaves with a link someone follows.
SHARED_HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


@bp.post("/conversations/<id:conversation_id>/share")
def share(conversation_id: int) -> ResponseReturnValue:
    """Share the conversation with the team as it is now (Share in its header), and go to
    the share's page with its link. A conversation shared already keeps its snapshot."""
    owner = signed_in_user()
    conversation = conversations.get_conversation(conversation_id, owner)
    shared = store.share(conversation, owner, now=live_view)
    return _go(url_for(".manage", share_id=shared.id))


@bp.get("/shares")
def mine() -> ResponseReturnValue:
    """Your shared conversations, with their links."""
    return render_template("shares.html", shares=store.shares_of(signed_in_user()))


@bp.get("/shares/<id:share_id>")
def manage(share_id: int) -> ResponseReturnValue:
    """One of your shares: its link, when it was taken, Update, Stop sharing, public or not."""
    shared = store.own_share(share_id, signed_in_user())
    return _manage_page(shared)


@bp.post("/shares/<id:share_id>/update")
def update(share_id: int) -> ResponseReturnValue:
    """Take the snapshot again from the conversation as it is now."""
    shared = store.own_share(share_id, signed_in_user())
    try:
        store.update(shared, now=live_view)
    except store.ShareError as exc:
        return _manage_page(shared, error=str(exc), status=409)
    return _go(url_for(".manage", share_id=shared.id))


@bp.post("/shares/<id:share_id>/public")
def public(share_id: int) -> ResponseReturnValue:
    """Let anyone with the link read it, signed in or not, or the team only."""
    owner = signed_in_user()
    shared = store.own_share(share_id, owner)
    wanted = request.form.get("public") == "on"
    if wanted and not current_app.config["PUBLIC_LINKS"]:
        error = "Public links are switched off here (CHATAPP_PUBLIC_LINKS); ask an admin."
        return _manage_page(shared, error=error, status=409)
    store.set_public(shared, wanted, by=owner)
    return _go(url_for(".manage", share_id=shared.id))


@bp.post("/shares/<id:share_id>/stop")
def stop(share_id: int) -> ResponseReturnValue:
    """Stop sharing: the link answers 404 from now on, like any missing page."""
    owner = signed_in_user()
    shared = store.own_share(share_id, owner)
    conversation_id = shared.conversation_id
    store.stop(shared, by=owner)
    if conversation_id is not None:
        return _go(url_for("conversations.show", conversation_id=conversation_id))
    return _go(url_for(".mine"))


@bp.get("/shared/<token>")
def page(token: str) -> ResponseReturnValue:
    """The shared conversation as it was when shared: read-only, whose it is and when."""
    shared = _readable(token)
    if isinstance(shared, BaseResponse):
        return shared
    messages = store.snapshot(shared)
    for message in messages:
        if message.role == "assistant" and not is_kept(message.content, message.id):
            render_answer(message.content, message.id)
            let_streams_run()  # rendering holds the worker's streams
    body = render_template(
        "shared.html",
        share=shared,
        messages=messages,
        signed_in=current_user.is_authenticated,
        public_links=current_app.config["PUBLIC_LINKS"],
    )
    return _shared(make_response(body))


@bp.get("/shared/<token>/files/<id:file_id>")
def file(token: str, file_id: int) -> ResponseReturnValue:
    """A file of the snapshot: a raster image inline, anything else as a download."""
    return _file(token, file_id, inline=True)


@bp.get("/shared/<token>/files/<id:file_id>/download")
def download(token: str, file_id: int) -> ResponseReturnValue:
    return _file(token, file_id, inline=False)


@bp.post("/shared/<token>/continue")
def continue_(token: str) -> ResponseReturnValue:
    """Continue in my chats: a conversation of your own, copied from the snapshot with its
    files, to go on from."""
    shared = store.find(token)
    if shared is None:
        abort(404)
    models = catalogue()
    model = shared.model if models.unavailable(shared.model) is None else models.default()
    copy = store.copy_for(shared, signed_in_user(), model)
    return _go(url_for("conversations.show", conversation_id=copy.id))


@bp.get("/admin/shares")
def every() -> ResponseReturnValue:
    """Every share, whose it is and when it was taken, with End sharing (admins only)."""
    _admin_only()
    return render_template("admin_shares.html", shares=store.every_share())


@bp.post("/admin/shares/<id:share_id>/end")
def end(share_id: int) -> ResponseReturnValue:
    """An admin ends someone's share (recorded in the audit log)."""
    _admin_only()
    shared = store.get(share_id)
    if shared is None:
        abort(404)
    store.stop(shared, by=signed_in_user())
    return redirect(url_for(".every"), code=303)


def _readable(token: str) -> Share | BaseResponse:
    """The share this link names, for whoever asks: signed in, anyone's; signed out, only a
    public one while CHATAPP_PUBLIC_LINKS allows. Signed out, any other link (there or not)
    leads to signing in, as every page does; signed in, a missing one is a 404."""
    shared = store.find(token)
    if current_user.is_authenticated:
        if shared is None:
            abort(404)
        return shared
    if shared is not None and shared.public and current_app.config["PUBLIC_LINKS"]:
        return shared
    return redirect(url_for("auth.login", next=request.path))


def _file(token: str, file_id: int, *, inline: bool) -> ResponseReturnValue:
    shared = _readable(token)
    if isinstance(shared, BaseResponse):
        return shared
    found = store.shared_file(shared, file_id)
    if found is None:
        abort(404)
    return _shared(
        file_response(found.data, found.name, found.media_type, inline=inline, cache="no-store")
    )


def _shared(response: Response) -> Response:
    for name, value in SHARED_HEADERS.items():
        response.headers[name] = value
    return response


def _manage_page(shared: Share, *, error: str | None = None, status: int = 200) -> Response:
    body = render_template(
        "share.html",
        share=shared,
        link=url_for(".page", token=shared.token, _external=True),
        public_links=current_app.config["PUBLIC_LINKS"],
        error=error,
    )
    response = make_response(body, status)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _go(target: str) -> BaseResponse:
    """To `target` as a whole page: htmx follows HX-Redirect, a plain form a 303."""
    if htmx.is_htmx(request):
        return htmx.redirect(make_response("", 204), target)
    return redirect(target, code=303)


def _admin_only() -> None:
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(404)
