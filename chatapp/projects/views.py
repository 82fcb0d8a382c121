"""Pages and actions on projects; moving a conversation into or out of one; pins."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from .. import attachments, htmx, ids
from ..attachments.kinds import INLINE_TYPES, FileRefused
from ..auth import signed_in_user
from ..conversations import store as conversations
from ..extensions import db
from ..llm.catalogue import catalogue
from ..models import AttachedFile, Conversation, Project, Sharing
from . import pins, store
from .sidebar import sidebar_context
from .store import Need

bp = Blueprint("projects", __name__)

SHARING_CHOICES = (
    (Sharing.PRIVATE.value, "Only me"),
    (Sharing.USE.value, "The team: Can use"),
    (Sharing.EDIT.value, "The team: Can edit"),
)


@bp.route("/projects", methods=["GET", "POST"])
def index() -> ResponseReturnValue:
    """Every project you may use, and a form to start one."""
    user = signed_in_user()
    error, typed = None, ""
    if request.method == "POST":
        typed = request.form.get("name", "")
        try:
            project = store.create(user, store.clean_name_of_project(typed))
        except store.ProjectError as exc:
            error = str(exc)
        else:
            return redirect(url_for(".show", project_id=project.id), code=303)
    body = render_template(
        "projects.html",
        projects=store.projects_for(user),
        error=error,
        typed=typed,
        **_sidebar(),
    )
    return make_response(body, 422 if error else 200)


@bp.get("/projects/<id:project_id>")
def show(project_id: int) -> str:
    return _page(store.get_project(project_id, signed_in_user()))


@bp.post("/projects/<id:project_id>/settings")
def settings(project_id: int) -> ResponseReturnValue:
    """Change the project's name and instructions (its owner and, if shared so, its editors)."""
    project = store.get_project(project_id, signed_in_user(), Need.EDIT)
    name = request.form.get("name", "")
    instructions = request.form.get("instructions", "")
    try:
        store.update_project(
            project,
            name=store.clean_name_of_project(name),
            instructions=store.clean_instructions(
                instructions, limit=int(current_app.config["MAX_SYSTEM_PROMPT_CHARS"])
            ),
        )
    except store.ProjectError as exc:
        body = _page(project, error=str(exc), typed_name=name, typed_instructions=instructions)
        return make_response(body, 422)
    return _back(project, saved="settings")


@bp.post("/projects/<id:project_id>/sharing")
def sharing(project_id: int) -> ResponseReturnValue:
    """Who besides its owner may use or change the project (its owner alone)."""
    user = signed_in_user()
    project = store.get_project(project_id, user, Need.OWN)
    try:
        store.set_sharing(project, request.form.get("sharing", ""), by=user)
    except store.ProjectError as exc:
        return make_response(_page(project, sharing_error=str(exc)), 422)
    return _back(project, saved="sharing")


@bp.post("/projects/<id:project_id>/files")
def add_files(project_id: int) -> ResponseReturnValue:
    """Add files to the project, checked as a question's are; all of them or none."""
    project = store.get_project(project_id, signed_in_user(), Need.EDIT)
    limits = attachments.Limits.of(current_app.config)
    uploads = [u for u in request.files.getlist("files") if u.filename]
    try:
        if not uploads:
            raise FileRefused("Choose a file to add.")
        checked = []
        for upload in uploads:
            data = upload.read()
            upload.close()
            name = upload.filename or "file"
            checked.append((name, data, attachments.check(name, data, limits)))
        attachments.fits_model([i for _, _, i in checked], catalogue().get(catalogue().default()))
        kept = store.files_of(project.id)
        store.check_names(kept, [name for name, _, _ in checked])
        attachments.fits_question(
            [
                *kept,
                *(AttachedFile(0, n, i.kind, i.media_type, len(d)) for n, d, i in checked),
            ],
            limits,
        )
    except FileRefused as exc:
        return make_response(_page(project, files_error=str(exc)), 422)
    for name, data, inspected in checked:
        store.add_file(project, name, data, inspected)
    return _back(project, saved="files")


@bp.get("/projects/<id:project_id>/files/<id:attachment_id>")
def file(project_id: int, attachment_id: int) -> Response:
    """One of the project's files: a raster image inline, anything else as a download."""
    project = store.get_project(project_id, signed_in_user())
    attachment = store.file_of(project, attachment_id)
    data, name, media_type = attachment.data, attachment.name, attachment.media_type
    db.session.close()
    response = Response(
        data, mimetype=media_type + ("; charset=utf-8" if media_type.startswith("text/") else "")
    )
    disposition = "inline" if media_type in INLINE_TYPES else "attachment"
    response.headers.set("Content-Disposition", disposition, filename=name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.post("/projects/<id:project_id>/files/<id:attachment_id>/remove")
def remove_file(project_id: int, attachment_id: int) -> ResponseReturnValue:
    project = store.get_project(project_id, signed_in_user(), Need.EDIT)
    store.remove_file(project, store.file_of(project, attachment_id))
    return _back(project, saved="files")


@bp.route("/projects/<id:project_id>/delete", methods=["GET", "POST"])
def delete(project_id: int) -> ResponseReturnValue:
    """Delete the project (its owner alone): GET asks to confirm, POST does it. Its
    conversations, everyone's, stay, outside any project."""
    user = signed_in_user()
    project = store.get_project(project_id, user, Need.OWN)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("project_delete.html", project=project)
    store.delete_projects([project.id], by=user)
    if htmx.is_htmx(request):
        return htmx.redirect(make_response("", 204), url_for(".index"))
    return redirect(url_for(".index"), code=303)


@bp.post("/projects/<id:project_id>/pin")
def pin_project(project_id: int) -> ResponseReturnValue:
    user = signed_in_user()
    project = store.get_project(project_id, user)
    pins.pin(user, project=project)
    return _pinned(url_for(".show", project_id=project.id), project=project)


@bp.post("/projects/<id:project_id>/unpin")
def unpin_project(project_id: int) -> ResponseReturnValue:
    user = signed_in_user()
    project = store.get_project(project_id, user)
    pins.unpin(user, project=project)
    return _pinned(url_for(".show", project_id=project.id), project=project)


@bp.post("/conversations/<id:conversation_id>/pin")
def pin_conversation(conversation_id: int) -> ResponseReturnValue:
    user = signed_in_user()
    conversation = conversations.get_conversation(conversation_id, user)
    pins.pin(user, conversation=conversation)
    return _pinned(_conversation_url(conversation), conversation=conversation)


@bp.post("/conversations/<id:conversation_id>/unpin")
def unpin_conversation(conversation_id: int) -> ResponseReturnValue:
    user = signed_in_user()
    conversation = conversations.get_conversation(conversation_id, user)
    pins.unpin(user, conversation=conversation)
    return _pinned(_conversation_url(conversation), conversation=conversation)


@bp.post("/conversations/<id:conversation_id>/project")
def move(conversation_id: int) -> ResponseReturnValue:
    """Move one of your conversations into a project you may use, or (empty) out of any."""
    user = signed_in_user()
    conversation = conversations.get_conversation(conversation_id, user)
    raw = request.form.get("project_id", "").strip()
    project: Project | None = None
    if raw:
        project_id = ids.parse(raw)
        if project_id is None:
            return Response("project_id must be a project's number.", status=400)
        project = store.get_project(project_id, user)
    store.move(conversation, project)
    url = _conversation_url(conversation)
    if htmx.is_htmx(request):
        return htmx.redirect(make_response("", 204), url)
    return redirect(url, code=303)


def _pinned(
    back: str, *, conversation: Conversation | None = None, project: Project | None = None
) -> ResponseReturnValue:
    """The Pin/Unpin button again and, out of band, the sidebar (htmx); else back to the page."""
    if not htmx.is_htmx(request):
        return redirect(back, code=303)
    user = signed_in_user()
    pinned = pins.is_pinned(user, conversation=conversation, project=project)
    body = render_template(
        "_pin.html", pinned=pinned, conversation=conversation, project=project
    ) + render_template("_sidebar.html", conversation=conversation, oob=True, **_sidebar())
    return make_response(body)


def _conversation_url(conversation: Conversation) -> str:
    return url_for("conversations.show", conversation_id=conversation.id)


def _back(project: Project, *, saved: str) -> ResponseReturnValue:
    return redirect(url_for(".show", project_id=project.id, saved=saved), code=303)


def _page(project: Project, **extra: object) -> str:
    user = signed_in_user()
    return render_template(
        "project.html",
        project=project,
        files=store.files_of(project.id),
        chats=store.conversations_in(project, user),
        can_edit=store.can(user, project, Need.EDIT),
        is_owner=store.can(user, project, Need.OWN),
        pinned=pins.is_pinned(user, project=project),
        sharing_choices=SHARING_CHOICES,
        saved=request.args.get("saved"),
        conversation=None,
        **_sidebar(),
        **extra,
    )


def _sidebar() -> dict[str, object]:
    return sidebar_context(signed_in_user(), ids.parse(request.args.get("page", "1")) or 1)
