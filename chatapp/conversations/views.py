"""Pages and actions on conversations and their messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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

from .. import attachments, audit, htmx, ids, tools
from ..attachments.kinds import FileRefused
from ..auth import signed_in_user
from ..cooperate import let_streams_run
from ..llm.catalogue import catalogue
from ..llm.thinking import DEFAULT_BUDGET, Thinking, fit
from ..models import AttachedFile, Attachment, Conversation, Message, MessageState, Project
from ..projects import pins
from ..projects import store as projects
from ..projects.sidebar import sidebar_context
from ..render import is_kept, render_answer
from ..streaming import Question, live_view, streams
from . import context, export, forms, quotas, store

bp = Blueprint("conversations", __name__)


@bp.get("/")
def index() -> str:
    """The new-chat page: the sidebar and an empty composer."""
    return _page(None)


@bp.get("/projects/<id:project_id>/chat")
def new_in_project(project_id: int) -> str:
    """The new-chat page of a project: what is sent starts a conversation in it."""
    return _page(None, project=projects.get_project(project_id, signed_in_user()))


@bp.get("/search")
def search() -> ResponseReturnValue:
    """Your conversations whose title or text matches `q`: the sidebar's list, or a page."""
    query = " ".join(request.args.get("q", "").split())
    error = None
    if len(query) > store.MAX_SEARCH:
        error = f"A search is at most {store.MAX_SEARCH} characters; shorten it."
        query, found = query[: store.MAX_SEARCH], []
    else:
        found = store.search(signed_in_user(), query)
    shown: dict[str, Any] = {"query": query, "results": found, "search_error": error}
    if htmx.is_htmx(request):
        body = render_template("_sidebar_results.html", conversation=None, **shown, **_sidebar())
        return make_response(body)
    return _page(None, **shown)


@bp.get("/conversations/<id:conversation_id>")
def show(conversation_id: int) -> str:
    return _page(store.get_conversation(conversation_id, signed_in_user()))


@bp.post("/messages")
def send() -> ResponseReturnValue:
    """Store the prompt and an empty answer, start the answer, and return both messages."""
    config = current_app.config
    limits = attachments.Limits.of(config)
    conversation = _conversation_from_form()
    try:
        prompt = forms.clean_prompt(
            request.form.get("content", ""), limit=config["MAX_PROMPT_CHARS"]
        )
    except forms.PromptError as exc:
        return _composer_error(str(exc), conversation)
    if over := _over_quota():
        return _composer_error(over, conversation, status=429)
    settings = None
    project = _project_from_form() if conversation is None else None
    if conversation is None:
        try:
            settings, _notes = _settings_from_form()
        except forms.SettingsError as exc:
            return _composer_error(str(exc), None, project=project)
    elif store.streaming_answer(conversation) is not None:
        return _composer_error(
            "Claude is still answering. Wait for the answer or press Stop, then send again.",
            conversation,
            status=409,
        )
    model = settings.model if settings is not None else conversation.model  # type: ignore[union-attr]
    try:
        files = _files_from_form(model, limits)
    except FileRefused as exc:
        return _composer_error(str(exc), conversation, project=project)
    first = conversation is None
    if conversation is None:
        assert settings is not None
        in_project = _context(project)
        if refusal := _unreadable(in_project, model) or _cannot_start(
            in_project, model, prompt, files
        ):
            return _composer_error(refusal, None, project=project)
        project_id = project.id if project is not None else None
        conversation = store.create_conversation(signed_in_user(), settings, project_id)
    elif refusal := _cannot_ask(conversation, prompt, files):
        return _composer_error(refusal, conversation)
    question, answer = store.add_exchange(conversation, prompt, files)
    asked = Question.first(conversation, question) if first else None  # nothing to read back
    streams().start(answer.id, conversation.id, asked)
    _send_news(conversation.id, "exchange", question.id, answer.id)

    page_url = url_for(".show", conversation_id=conversation.id)
    if not htmx.is_htmx(request):
        return redirect(page_url, code=303)
    created = request.form.get("conversation_id", "") == ""
    body = render_template(
        "_exchange.html",
        question=MessageState.of(question),
        answer=live_view(MessageState.of(answer)),
        conversation=conversation,
        created=created,
        newest_message_id=answer.id,
        **(_sidebar() | _header(conversation) if created else {}),
    )
    response = make_response(body)
    if created:
        htmx.push_url(response, page_url)
    return response


@bp.post("/messages/<id:message_id>/retry")
def retry(message_id: int) -> ResponseReturnValue:
    """Write the last answer again, in place of the failed, stopped or interrupted one."""
    message = store.get_message(message_id, signed_in_user())
    if over := _over_quota():
        return _composer_error(over, message.conversation, status=429)
    if cannot := _cannot_answer(message.conversation):
        return _composer_error(cannot, message.conversation)
    try:
        store.restart_answer(message)
    except store.ActionError as exc:
        return _composer_error(str(exc), message.conversation, status=409)
    streams().start(message.id, message.conversation_id)
    _send_news(message.conversation_id, "restart", message.id)
    body = render_template("_message.html", message=live_view(MessageState.of(message)), last=True)
    return make_response(body) if htmx.is_htmx(request) else _back_to(message)


@bp.route("/messages/<id:message_id>/edit", methods=["GET", "POST"])
def edit(message_id: int) -> ResponseReturnValue:
    """Edit the last question and send it again: its answer is written again in place.

    GET gives the form in place of the message (or, with `cancel`, the message again).
    """
    question = store.get_message(message_id, signed_in_user())
    shown = MessageState.of(question)
    if request.method == "GET":
        if not htmx.is_htmx(request):
            return _back_to(question)  # the form is a fragment of the page, for htmx
        if request.args.get("cancel"):
            return render_template("_message.html", message=shown, editable=True)
        return render_template("_edit_question.html", message=shown)
    try:
        content = forms.clean_prompt(
            request.form.get("content", ""), limit=current_app.config["MAX_PROMPT_CHARS"]
        )
        if over := _over_quota():
            raise store.ActionError(over)
        if cannot := _cannot_answer(question.conversation):
            raise store.ActionError(cannot)
        answer = store.edit_question(question, content, request.form.getlist("keep"))
    except (forms.PromptError, store.ActionError) as exc:
        typed = request.form.get("content", "")
        body = render_template("_edit_question.html", message=shown, draft=typed, error=exc)
        return make_response(body, 422)
    streams().start(answer.id, answer.conversation_id)
    _send_news(answer.conversation_id, "restart", question.id, answer.id)
    if not htmx.is_htmx(request):
        return _back_to(answer)
    return render_template(
        "_message.html", message=MessageState.of(question), editable=True
    ) + render_template(
        "_message.html", message=live_view(MessageState.of(answer)), oob=True, last=True
    )


@bp.post("/messages/<id:message_id>/continue")
def continue_(message_id: int) -> ResponseReturnValue:
    """Ask Claude, in a new turn, to carry on with an answer that was cut short."""
    message = store.get_message(message_id, signed_in_user())
    if over := _over_quota():
        return _composer_error(over, message.conversation, status=429)
    if cannot := _cannot_ask(message.conversation, store.CONTINUE_PROMPT):
        return _composer_error(cannot, message.conversation)
    try:
        question, answer = store.continue_answer(message)
    except store.ActionError as exc:
        return _composer_error(str(exc), message.conversation, status=409)
    streams().start(answer.id, answer.conversation_id)
    _send_news(answer.conversation_id, "exchange", question.id, answer.id)
    if not htmx.is_htmx(request):
        return _back_to(message)
    body = render_template(
        "_exchange.html",
        question=MessageState.of(question),
        answer=live_view(MessageState.of(answer)),
        conversation=message.conversation,
        created=False,
    )
    return make_response(body)


@bp.post("/conversations/<id:conversation_id>/settings")
def settings(conversation_id: int) -> ResponseReturnValue:
    """Change the model, system prompt, tools and thinking for the next answers."""
    conversation = store.get_conversation(conversation_id, signed_in_user())
    try:
        settings, notes = _settings_from_form()
    except forms.SettingsError as exc:
        # What was typed stays in the form, to be shortened or corrected.
        typed = request.form.get("system_prompt", "")
        body = render_template(
            "_settings.html",
            conversation=conversation,
            error=exc,
            system_prompt=typed,
            **_header(conversation),
        )
        return make_response(body, 422)
    store.update_settings(conversation, settings)
    if htmx.is_htmx(request):
        body = render_template(
            "_settings.html",
            conversation=conversation,
            saved=True,
            notes=notes,
            **_header(conversation),
        )
        return make_response(body + _model_notice(conversation, oob=True))
    return redirect(url_for(".show", conversation_id=conversation.id), code=303)


@bp.get("/settings/thinking")
def thinking_fields() -> ResponseReturnValue:
    """The thinking fields for the model the settings form has chosen (htmx, on change): what
    the new model takes, with a sentence for each choice it drops; and, out of band, the
    server tools it can use (Web search, Web fetch), as they were ticked."""
    prefix = request.args.get("prefix", "")
    if prefix not in ("new", "conversation"):
        abort(400, "prefix must be new or conversation")
    model = catalogue().get(request.args.get("model", ""))
    if model is None:
        abort(400, "There is no such model here.")
    budget = request.args.get("thinking_budget", "")
    asked = Thinking(
        on=request.args.get("thinking") == "on",
        effort=request.args.get("effort") or None,
        budget=ids.parse(budget) or DEFAULT_BUDGET,
    )
    fitted, notes = fit(asked, model)
    body = render_template(
        "_thinking_fields.html", prefix=prefix, model=model, asked=fitted, notes=notes
    ) + render_template(
        "_server_tool_fields.html",
        prefix=prefix,
        model=model,
        chosen=request.args.getlist("server_tools"),
        server_oob=True,
    )
    return make_response(body)


@bp.post("/conversations/<id:conversation_id>/model")
def switch_model(conversation_id: int) -> ResponseReturnValue:
    """Move a conversation whose model was retired to the default model."""
    conversation = store.get_conversation(conversation_id, signed_in_user())
    model = catalogue().default()
    store.switch_model(conversation, model, catalogue().get(model))
    if htmx.is_htmx(request):
        body = _model_notice(conversation) + render_template(
            "_settings.html",
            conversation=conversation,
            saved=True,
            oob=True,
            **_header(conversation),
        )
        return make_response(body)
    return redirect(url_for(".show", conversation_id=conversation.id), code=303)


@bp.get("/conversations/<id:conversation_id>/export.md")
def export_markdown(conversation_id: int) -> Response:
    conversation = store.get_conversation(conversation_id, signed_in_user())
    audit.record("export", actor=signed_in_user(), target=conversation.id, detail="Markdown")
    return _download(export.as_markdown(conversation), conversation, "md", "text/markdown")


@bp.get("/conversations/<id:conversation_id>/export.json")
def export_json(conversation_id: int) -> Response:
    conversation = store.get_conversation(conversation_id, signed_in_user())
    config = current_app.config
    exported = export.as_json(conversation, config["PRICES"], config["WEB_SEARCH_PRICE"])
    body = json.dumps(exported, indent=2)
    audit.record("export", actor=signed_in_user(), target=conversation.id, detail="JSON")
    return _download(body, conversation, "json", "application/json")


def _download(body: str, conversation: Conversation, suffix: str, mimetype: str) -> Response:
    name = f"chatapp-{conversation.id}.{suffix}"
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.route("/conversations/<id:conversation_id>/title", methods=["GET", "POST"])
def title(conversation_id: int) -> ResponseReturnValue:
    """Rename in place: GET gives the field (htmx), POST saves it and shows the new title."""
    conversation = store.get_conversation(conversation_id, signed_in_user())
    if request.method == "GET":
        if not htmx.is_htmx(request):  # the field is a fragment of the page, for htmx
            return redirect(url_for(".show", conversation_id=conversation.id), code=303)
        return render_template(
            "_title.html", conversation=conversation, editing=True, **_header(conversation)
        )
    try:
        store.rename(conversation, request.form.get("title", ""))
    except store.ActionError as exc:
        body = render_template(
            "_title.html",
            conversation=conversation,
            editing=True,
            error=exc,
            typed=request.form.get("title", ""),
        )
        return make_response(body, 422)
    if not htmx.is_htmx(request):
        return redirect(url_for(".show", conversation_id=conversation.id), code=303)
    return render_template(
        "_title.html", conversation=conversation, **_header(conversation)
    ) + render_template("_sidebar.html", conversation=conversation, oob=True, **_sidebar())


@bp.post("/conversations/<id:conversation_id>/delete")
def delete(conversation_id: int) -> ResponseReturnValue:
    """Delete the conversation and its messages (an answer being written is stopped first)."""
    conversation = store.get_conversation(conversation_id, signed_in_user())
    answer = store.streaming_answer(conversation)
    if answer is not None:
        streams().stop(answer.id)
    store.delete(conversation, by=signed_in_user())
    if htmx.is_htmx(request):
        return htmx.redirect(make_response("", 204), url_for(".index"))
    return redirect(url_for(".index"), code=303)


@bp.route("/conversations/delete-all", methods=["GET", "POST"])
def delete_all() -> ResponseReturnValue:
    """Delete all of your conversations: GET asks to confirm (a page, so that it works
    without JavaScript), POST does it, answers being written stopped first."""
    owner = signed_in_user()
    if request.method == "GET" or request.form.get("confirm") != "yes":
        count = store.count_conversations(owner)
        return render_template("delete_all.html", count=count)
    for answer_id in store.streaming_answers(owner):
        streams().stop(answer_id)
    store.delete_all(owner, pause=let_streams_run)
    if htmx.is_htmx(request):
        return htmx.redirect(make_response("", 204), url_for(".index"))
    return redirect(url_for(".index"), code=303)


def _send_news(conversation_id: int, kind: str, *message_ids: int) -> None:
    """Show the change on the conversation's other open pages (not on the one that made it)."""
    tab = request.headers.get("X-Chat-Tab")
    origin = tab if tab and len(tab) <= 64 else None  # app.js sends a UUID; longer is not ours
    streams().send_news(conversation_id, kind, message_ids, origin=origin)


def _back_to(message: Message) -> ResponseReturnValue:
    return redirect(url_for(".show", conversation_id=message.conversation_id), code=303)


def _conversation_from_form() -> Conversation | None:
    raw = request.form.get("conversation_id", "").strip()
    if not raw:
        return None
    conversation_id = ids.parse(raw)
    if conversation_id is None:
        abort(400, "conversation_id must be a conversation's number.")
    return store.get_conversation(conversation_id, signed_in_user())


def _settings_from_form() -> tuple[forms.Settings, list[str]]:
    models = catalogue()
    return forms.clean_settings(
        model=request.form.get("model") or models.default(),
        system_prompt=request.form.get("system_prompt", ""),
        tools=request.form.getlist("tools"),
        thinking=request.form.get("thinking") == "on",
        thinking_budget=request.form.get("thinking_budget", ""),
        effort=request.form.get("effort", ""),
        catalogue=models,
        known_tools=list(tools.registered()),
        max_system_prompt=int(current_app.config["MAX_SYSTEM_PROMPT_CHARS"]),
        server=request.form.getlist("server_tools"),
        config=current_app.config,
    )


def _cannot_ask(
    conversation: Conversation, prompt: str, files: Sequence[Attachment] = ()
) -> str | None:
    """Why this question cannot be sent in the conversation as it stands, or None: its model
    is gone or cannot read its project's files, or the question would not fit in the model's
    context window."""
    if cannot := _cannot_answer(conversation):
        return cannot
    answers = [MessageState.of(m) for m in conversation.messages if m.role == "assistant"]
    extra = sum(attachments.estimated_tokens(file) for file in files)
    in_project = projects.context_of(conversation)
    if in_project is not None and not any(a.input_tokens is not None for a in answers):
        # Before the first request the project's part is not counted in any answer's usage yet.
        extra += _project_tokens(in_project)
    return context.too_big(answers, catalogue().get(conversation.model), prompt, extra)


def _cannot_start(
    in_project: projects.ProjectContext | None,
    model: str,
    prompt: str,
    files: Sequence[Attachment],
) -> str | None:
    """Why the first question of a new chat (in a project, with its instructions and files)
    cannot fit in the model's context window, or None."""
    extra = sum(attachments.estimated_tokens(file) for file in files)
    if in_project is not None:
        extra += _project_tokens(in_project)
    return context.too_big([], catalogue().get(model), prompt, extra)


def _project_tokens(in_project: projects.ProjectContext) -> int:
    """About how many tokens a project's instructions and files add to a request."""
    instructions = len(in_project.instructions) // context.CHARS_PER_TOKEN
    return instructions + sum(attachments.estimated_tokens(file) for file in in_project.files)


def _context(project: Project | None) -> projects.ProjectContext | None:
    return None if project is None else projects.context_of_project(project)


def _project_from_form() -> Project | None:
    """The project a new conversation starts in (`project_id`, one you may use), or None."""
    raw = request.form.get("project_id", "").strip()
    if not raw:
        return None
    project_id = ids.parse(raw)
    if project_id is None:
        abort(400, "project_id must be a project's number.")
    return projects.get_project(project_id, signed_in_user())


def _files_from_form(model: str, limits: attachments.Limits) -> list[Attachment]:
    """The question's files: those the composer uploaded already (`attachment` ids), then any
    the form carries itself (without JavaScript), checked; new ones are added to the session,
    not committed. FileRefused if one cannot go, and then nothing is stored."""
    owner = signed_in_user()
    files = attachments.pending(owner, request.form.getlist("attachment"))
    new = []
    for upload in request.files.getlist("files"):
        if not upload.filename:
            continue  # the empty file input of a form without files
        data = upload.read()
        upload.close()
        new.append((upload.filename, data, attachments.check(upload.filename, data, limits)))
    chosen = [AttachedFile.of(file) for file in files] + [
        AttachedFile(0, name, i.kind, i.media_type, len(data), i.width, i.height, i.pages)
        for name, data, i in new
    ]
    attachments.fits_model(chosen, catalogue().get(model))
    attachments.fits_question(chosen, limits)
    return files + [attachments.add(owner, name, data, i) for name, data, i in new]


def _cannot_answer(conversation: Conversation) -> str | None:
    """Why no answer can be asked in the conversation as it stands (a new question, an
    edited one, a retry), or None: its model is gone, or cannot read its project's files."""
    return _model_gone(conversation) or _unreadable(
        projects.context_of(conversation), conversation.model
    )


def _unreadable(in_project: projects.ProjectContext | None, model: str) -> str | None:
    """Why `model` cannot be asked with the project's files (an image or a PDF it cannot
    read), or None."""
    known = catalogue().get(model)
    for file in in_project.files if in_project is not None else ():
        try:
            attachments.fits_model([file], known)
        except FileRefused:
            name = known.display_name if known else model
            return (
                f"{name} cannot read {file.name}, one of this project's files: "
                "pick a model that can."
            )
    return None


def _model_gone(conversation: Conversation) -> str | None:
    """Why the conversation's model cannot answer any more, or None if it can."""
    gone = catalogue().unavailable(conversation.model)
    return f"{gone} Pick another model in this conversation's settings." if gone else None


def _model_notice(conversation: Conversation, *, oob: bool = False) -> str:
    models = catalogue()
    return render_template(
        "_model_notice.html",
        conversation=conversation,
        gone=models.unavailable(conversation.model),
        default=models.get(models.default()),
        oob=oob,
    )


def _over_quota() -> str | None:
    """Why the signed-in person may not start an answer now, or None if they may."""
    try:
        quotas.check(signed_in_user(), current_app.config)
    except quotas.QuotaExceeded as exc:
        return str(exc)
    return None


def _composer_error(
    text: str,
    conversation: Conversation | None,
    status: int = 422,
    *,
    project: Project | None = None,
) -> Response:
    """Say what is wrong next to the composer; the typed text stays where it is."""
    if htmx.is_htmx(request):
        response = make_response(render_template("_composer_error.html", error=text), status)
        return htmx.retarget(response, "#composer-error", "outerHTML")
    draft = request.form.get("content", "")
    body = _page(conversation, composer_error=text, draft=draft, project=project)
    return make_response(body, status)


def _page(
    conversation: Conversation | None, *, project: Project | None = None, **extra: object
) -> str:
    """The conversation page (the new-chat page without one, in `project` if given), its
    messages as they are now."""

    messages = [] if conversation is None else store.messages_of(conversation)
    shown = [live_view(MessageState.of(m)) for m in messages]
    _render_answers(shown)
    naming = None if conversation is None else conversation.naming
    models = catalogue()
    model = None if conversation is None else models.get(conversation.model)
    return render_template(
        "conversation.html",
        conversation=conversation,
        messages=shown,
        usages=shown + [naming] if naming is not None else shown,
        newest_message_id=shown[-1].id if shown else 0,
        context_use=context.use([m for m in shown if m.role == "assistant"], model),
        gone=None if conversation is None else models.unavailable(conversation.model),
        default=models.get(models.default()),
        **_header(conversation, project),
        **_sidebar(),
        **extra,
    )


def _render_answers(shown: list[MessageState]) -> None:
    """Render the page's answers before its template does, one at a time, with the worker's
    streams running in between (rendering holds them); the template then takes each from
    what the worker keeps (chatapp.render.kept)."""
    for state in shown:
        if state.role == "assistant" and not state.is_streaming:
            if not is_kept(state.content, state.id):
                render_answer(state.content, state.id)
                let_streams_run()


def _header(conversation: Conversation | None, project: Project | None = None) -> dict[str, object]:
    """What the conversation's header and settings show of projects and pins: its project
    (or, for a new chat, the project it starts in), the projects it may move to, and whether
    it is pinned."""
    if conversation is None:
        return {"project": project, "projects": [], "pinned": False}
    user = signed_in_user()
    if conversation.project_id is not None:
        project = projects.find_visible(conversation.project_id, user)
    return {
        "project": project,
        "projects": projects.projects_for(user),
        "pinned": pins.is_pinned(user, conversation=conversation),
    }


def _sidebar() -> dict[str, object]:
    return sidebar_context(signed_in_user(), ids.parse(request.args.get("page", "1")) or 1)
