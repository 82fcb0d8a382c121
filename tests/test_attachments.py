"""Attachments: images, PDFs and text files with a question, checked from their bytes, sent
to Claude through the Files API, shown to their owner and to nobody else."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from pypdf import PdfWriter
from sqlalchemy import func, select

from chatapp.extensions import db
from chatapp.llm.catalogue import catalogue
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import Attachment
from chatapp.render import anchors

from .conftest import Configure, html, send
from .helpers import answer_id, wait_finished

HX = {"HX-Request": "true"}


def png(width: int = 40, height: int = 30, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def pdf(pages: int = 3) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def upload(client: FlaskClient, name: str, data: bytes, model: str = "") -> Any:
    """Upload as the composer does; the response."""
    return client.post(
        "/attachments",
        data={"file": (io.BytesIO(data), name), "model": model},
        headers=HX,
    )


def uploaded(client: FlaskClient, name: str, data: bytes, model: str = "") -> str:
    """Upload a file that must be taken; its id, as its chip's hidden input carries it."""
    response = upload(client, name, data, model)
    assert response.status_code == 200, response.data
    chip = html(response.data)
    assert chip.select_one(".chip__name").get_text() == name
    return str(chip.select_one("input[name=attachment]")["value"])


def ask(
    client: FlaskClient, prompt: str, ids: list[str], conversation_id: int | None = None
) -> Any:
    response = client.post(
        "/messages",
        data={"content": prompt, "conversation_id": conversation_id or "", "attachment": ids},
        headers=HX,
    )
    return response


def files_stored(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count(Attachment.id))) or 0)


# -- sending ---------------------------------------------------------------------------------


def test_files_go_to_claude_in_order_before_the_text_uploaded_once(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    ids = [
        uploaded(client, "screenshot.png", png()),
        uploaded(client, "contract.pdf", pdf(3)),
        uploaded(client, "notes.csv", b"name,count\nfoo,3\n"),
    ]
    response = ask(client, "What do these say?", ids)
    assert response.status_code == 200, response.data
    answer = wait_finished(app, answer_id(html(response.data)))
    assert answer.status == "complete"
    [request] = upstream.requests
    image, document, text, question = request["messages"][0]["content"]
    assert image["type"] == "image" and image["source"]["type"] == "file"
    assert document["type"] == "document" and document["title"] == "contract.pdf"
    assert document["source"]["type"] == "file"
    assert text["type"] == "document" and text["source"] == {
        "type": "text",
        "media_type": "text/plain",
        "data": "name,count\nfoo,3\n",
    }
    assert question["type"] == "text" and question["text"] == "What do these say?"
    # The cache breakpoint is after the files: later turns read them from the cache.
    assert question["cache_control"] == {"type": "ephemeral"}
    uploads = upstream.files.files
    assert {f.filename for f in uploads.values()} == {"screenshot.png", "contract.pdf"}
    assert uploads[image["source"]["file_id"]].data == png()

    # The demo reply says what it received.
    assert "screenshot.png (PNG image, 40 × 30)" in answer.content
    assert "contract.pdf (PDF, 3 pages)" in answer.content

    # The next turn refers to the same uploads; nothing is uploaded again.
    send(client, "And now?", answer.conversation_id)
    wait_finished(app, answer.id + 2)
    later = upstream.requests[-1]["messages"][0]["content"]
    assert later[0]["source"] == image["source"] and later[1]["source"] == document["source"]
    assert len(upstream.files.files) == 2


def test_a_long_document_is_read_from_the_cache_on_later_turns(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    ids = [uploaded(client, "manual.pdf", pdf(5))]  # about 10,000 tokens
    answer = wait_finished(app, answer_id(html(ask(client, "Summarise", ids).data)))
    assert answer.cache_creation_tokens and answer.cache_creation_tokens >= 10_000
    send(client, "More detail", answer.conversation_id)
    second = wait_finished(app, answer.id + 2)
    assert second.cache_read_tokens and second.cache_read_tokens >= 10_000


def test_without_javascript_the_form_posts_the_files_with_the_question(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    response = client.post(
        "/messages",
        data={
            "content": "Look",
            "conversation_id": "",
            "files": [(io.BytesIO(png()), "a.png"), (io.BytesIO(b"hello"), "b.txt")],
        },
    )
    assert response.status_code == 303
    wait_finished(app, 2)
    content = upstream.requests[0]["messages"][0]["content"]
    assert [block["type"] for block in content] == ["image", "document", "text"]
    assert content[1]["title"] == "b.txt"


def test_the_type_is_decided_from_the_bytes(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    ids = [uploaded(client, "photo.pdf", png()), uploaded(client, "log.png", b"INFO started\n")]
    wait_finished(app, answer_id(html(ask(client, "?", ids).data)))
    image, text, _question = upstream.requests[0]["messages"][0]["content"]
    assert image["type"] == "image"
    assert text["type"] == "document" and text["source"]["type"] == "text"
    with app.app_context():
        kinds = {a.name: (a.kind, a.media_type) for a in db.session.scalars(select(Attachment))}
    assert kinds == {"photo.pdf": ("image", "image/png"), "log.png": ("text", "text/plain")}


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("empty.txt", b"", "is empty"),
        ("program.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" * 10, "not a file Claude can read"),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "does not open as one"),
        ("broken.pdf", b"%PDF-1.7\n" + b"nonsense" * 20, "does not open as one"),
        ("huge.pdf", pdf(3), "at most 2 pages"),
        ("wide.png", png(9000, 10), "at most 8,000 pixels a side"),
        # (Small enough for the test client's form to stay in memory: larger ones it would
        # spool to a file that it never closes.)
        ("big.txt", b"x" * 110_000, "at most 0.1 MB"),
    ],
)
def test_files_that_cannot_go_are_refused_with_a_sentence_and_not_stored(
    configured: Configure, name: str, data: bytes, words: str
) -> None:
    app = configured(MAX_PDF_PAGES=2, MAX_FILE_MB=0.1)
    client = app.test_client()
    response = upload(client, name, data)
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#composer-error"
    assert words in html(response.data).get_text()
    # Sent with the form itself (without JavaScript), it is refused the same way.
    posted = client.post(
        "/messages",
        data={"content": "hi", "conversation_id": "", "files": [(io.BytesIO(data), name)]},
        headers=HX,
    )
    assert posted.status_code == 422 and words in html(posted.data).get_text()
    assert files_stored(app) == 0


def test_too_many_files_or_bytes_in_one_question_are_refused(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(MAX_FILES=2)
    client = app.test_client()
    ids = [uploaded(client, f"{n}.txt", b"some text") for n in range(3)]
    response = ask(client, "All three", ids)
    assert response.status_code == 422
    assert "at most 2 files" in html(response.data).get_text()
    assert upstream.requests == []
    assert ask(client, "Two", ids[:2]).status_code == 200


def test_a_model_without_pdf_input_refuses_a_pdf_before_sending(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    assert catalogue(app).refresh()
    old = "claude-3-haiku-20240307"  # the fake lists it without PDF input
    refused = upload(client, "a.pdf", pdf(1), model=old)
    assert refused.status_code == 422
    assert "Claude Haiku 3 cannot read PDFs" in html(refused.data).get_text()
    # Uploaded for another model, then sent to this one: refused at the send.
    pdf_id = uploaded(client, "a.pdf", pdf(1))
    response = client.post(
        "/messages",
        data={"content": "Read", "conversation_id": "", "model": old, "attachment": pdf_id},
        headers=HX,
    )
    assert response.status_code == 422
    assert "cannot read PDFs" in html(response.data).get_text()
    assert upstream.requests == []
    # Images it can see.
    assert upload(client, "a.png", png(), model=old).status_code == 200


# -- showing ---------------------------------------------------------------------------------


def test_the_question_shows_its_files_served_with_safe_headers(
    app: Flask, client: FlaskClient
) -> None:
    ids = [
        uploaded(client, "shot.png", png()),
        uploaded(client, "report.pdf", pdf(1)),
        uploaded(client, "page.html", b"<script>alert(1)</script>"),
    ]
    answer = wait_finished(app, answer_id(html(ask(client, "Look", ids).data)))
    page = html(client.get(f"/conversations/{answer.conversation_id}").data)
    question = page.select_one(f"#{anchors.article(answer.id - 1)}")
    thumbnail = question.select_one(".attachments__image a")
    assert thumbnail["href"] == f"/attachments/{ids[0]}"
    assert thumbnail.img["alt"] == "shot.png"
    chips = [a.get_text() for a in question.select(".attachments .chip a")]
    assert chips == ["report.pdf", "page.html"]

    image = client.get(f"/attachments/{ids[0]}")
    assert image.data == png() and image.mimetype == "image/png"
    assert image.headers["Content-Disposition"].startswith("inline")
    for response in (
        image,
        client.get(f"/attachments/{ids[1]}"),
        client.get(f"/attachments/{ids[2]}"),
        client.get(f"/attachments/{ids[0]}/download"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
    document = client.get(f"/attachments/{ids[1]}")
    assert document.mimetype == "application/pdf"
    assert document.headers["Content-Disposition"].startswith("attachment")
    markup = client.get(f"/attachments/{ids[2]}")
    assert markup.mimetype == "text/plain"  # never as HTML
    assert markup.headers["Content-Disposition"].startswith("attachment")
    # Nobody else gets them.
    other = app.test_client(user="bob")
    assert other.get(f"/attachments/{ids[0]}").status_code == 404
    assert other.post(f"/attachments/{ids[0]}/remove", headers=HX).status_code == 404


def test_edit_keeps_or_removes_files_and_retry_sends_them_again(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    ids = [uploaded(client, "a.txt", b"alpha"), uploaded(client, "b.txt", b"beta")]
    answer = wait_finished(app, answer_id(html(ask(client, "Both", ids).data)))
    question_id = answer.id - 1
    form = html(client.get(f"/messages/{question_id}/edit", headers=HX).data)
    assert [box["value"] for box in form.select("input[name=keep]")] == ids
    edited = client.post(
        f"/messages/{question_id}/edit",
        data={"content": "Only the first", "keep": [ids[0]]},
        headers=HX,
    )
    assert edited.status_code == 200
    wait_finished(app, answer.id)
    titles = [b.get("title") for b in upstream.requests[-1]["messages"][0]["content"]]
    assert titles == ["a.txt", None]
    assert files_stored(app) == 1

    client.post(f"/messages/{answer.id}/retry", headers=HX)
    wait_finished(app, answer.id)
    assert upstream.requests[-1]["messages"][0]["content"][0]["title"] == "a.txt"


def test_exports_list_the_files_and_search_finds_them_by_name(
    app: Flask, client: FlaskClient
) -> None:
    ids = [uploaded(client, "q3-report.pdf", pdf(2))]
    answer = wait_finished(app, answer_id(html(ask(client, "Numbers?", ids).data)))
    conversation = answer.conversation_id
    markdown = client.get(f"/conversations/{conversation}/export.md").get_data(as_text=True)
    assert "Attached: q3-report.pdf (PDF, 2 pages," in markdown
    exported = json.loads(client.get(f"/conversations/{conversation}/export.json").data)
    [file] = exported["messages"][0]["attachments"]
    assert file["name"] == "q3-report.pdf" and file["pages"] == 2
    found = html(client.get("/search", query_string={"q": "q3-rep"}, headers=HX).data)
    assert [a["href"] for a in found.select("a[href^='/conversations/']")] == [
        f"/conversations/{conversation}"
    ]


def test_files_go_with_their_conversation_and_their_uploaded_copies(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    ids = [uploaded(client, "a.png", png()), uploaded(client, "b.pdf", pdf(1))]
    answer = wait_finished(app, answer_id(html(ask(client, "Hi", ids).data)))
    uploaded_copies = set(upstream.files.files)
    assert len(uploaded_copies) == 2
    client.post(f"/conversations/{answer.conversation_id}/delete", headers=HX)
    assert files_stored(app) == 0
    import gevent

    with gevent.Timeout(5):
        while set(upstream.files.deleted) != uploaded_copies:
            gevent.sleep(0.05)
    assert client.get(f"/attachments/{ids[0]}").status_code == 404


def test_a_file_the_api_lost_is_uploaded_again(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    ids = [uploaded(client, "a.pdf", pdf(1))]
    answer = wait_finished(app, answer_id(html(ask(client, "Once", ids).data)))
    upstream.files.files.clear()  # expired, or another upstream after a restart
    send(client, "Again", answer.conversation_id)
    second = wait_finished(app, answer.id + 2)
    assert second.status == "complete"
    assert len(upstream.files.files) == 1
    with app.app_context():
        [attachment] = db.session.scalars(select(Attachment))
        assert attachment.file_id in upstream.files.files


def test_a_server_without_the_files_api_gets_base64(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(FILES_API=False)
    client = app.test_client()
    ids = [uploaded(client, "a.png", png())]
    wait_finished(app, answer_id(html(ask(client, "Inline", ids).data)))
    source = upstream.requests[0]["messages"][0]["content"][0]["source"]
    assert source["type"] == "base64" and source["media_type"] == "image/png"
    assert upstream.files.files == {}


def test_a_removed_chip_forgets_its_file(app: Flask, client: FlaskClient) -> None:
    file_id = uploaded(client, "a.txt", b"oops")
    assert client.post(f"/attachments/{file_id}/remove", headers=HX).status_code == 204
    assert files_stored(app) == 0
    assert ask(client, "Hi", [file_id]).status_code == 404


def test_another_worker_serves_a_file_uploaded_through_the_first(
    configured: Configure, tmp_path: Any
) -> None:
    first = configured()
    second = configured()  # the same database (and, with REDIS_URL, the same Redis)
    file_id = uploaded(first.test_client(), "shared.png", png())
    response = second.test_client().get(f"/attachments/{file_id}")
    assert response.status_code == 200 and response.data == png()


def test_attachments_count_in_the_answers_tokens(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Noted."))
    plain = wait_finished(app, answer_id(send(client, "Short")))
    ids = [uploaded(client, "big.pdf", pdf(4))]
    with_file = wait_finished(app, answer_id(html(ask(client, "Short", ids).data)))
    tokens = lambda m: m.input_tokens + m.cache_read_tokens + m.cache_creation_tokens  # noqa: E731
    assert tokens(with_file) >= tokens(plain) + 8000


def test_files_attached_but_never_sent_go_after_a_day(app: Flask, client: FlaskClient) -> None:
    from datetime import timedelta

    from chatapp import retention
    from chatapp.models import utcnow

    sent = uploaded(client, "sent.txt", b"kept")
    ask(client, "With it", [sent])
    forgotten = uploaded(client, "forgotten.txt", b"never sent")
    uploaded(client, "fresh.txt", b"still being written")
    with app.app_context():
        db.session.get(Attachment, int(forgotten)).created_at = utcnow() - timedelta(days=2)
        db.session.get(Attachment, int(sent)).created_at = utcnow() - timedelta(days=2)
        db.session.commit()
    retention.sweep(app)
    with app.app_context():
        left = {a.name for a in db.session.scalars(select(Attachment))}
    assert left == {"sent.txt", "fresh.txt"}
