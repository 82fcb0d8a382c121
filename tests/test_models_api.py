"""Models from the Models API: the picker, the default, thinking as each model takes it,
retired models, the context window, and the stop reasons that are not a plain end."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import pytest
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.catalogue import BUILT_IN, Catalogue, catalogue, model_info
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import Conversation
from chatapp.render import anchors
from chatapp.streaming import streams

from .conftest import Configure, html, send, user_id
from .helpers import answer_id, stored, wait_finished

HX = {"HX-Request": "true"}


def listed(app: Flask) -> Flask:
    """The app, with its list of models fetched from the fake's Models API."""
    assert catalogue(app).refresh()
    return app


@pytest.fixture
def fresh(configured: Configure) -> Flask:
    """An app with no MODEL set and the fake's list of models fetched."""
    return listed(configured(MODEL=None))


def picker(page: Any, prefix: str = "new") -> list[tuple[str, str]]:
    return [
        (option["value"], option.get_text()) for option in page.select(f"#{prefix}-model option")
    ]


def new_chat(client: FlaskClient, prompt: str, **settings: str) -> Any:
    """Send the first question of a new chat with these settings."""
    data = {"content": prompt, "conversation_id": "", **settings}
    response = client.post("/messages", data=data, headers=HX)
    assert response.status_code == 200, response.data
    return html(response.data)


# -- the list -------------------------------------------------------------------------------


def test_the_picker_lists_the_api_models_newest_first(fresh: Flask) -> None:
    page = html(fresh.test_client().get("/").data)
    options = picker(page)
    ids = [value for value, _label in options]
    # Retired models are not offered; deprecated ones are, and say so.
    assert "claude-3-7-sonnet-20250219" not in ids
    assert ("claude-opus-4-6", "Claude Opus 4.6 (deprecated)") in options
    assert ("claude-3-haiku-20240307", "Claude Haiku 3 (deprecated)") in options
    assert (
        ids.index("claude-sonnet-5-5")
        < ids.index("claude-sonnet-4-6")
        < ids.index("claude-haiku-4-5")
    )
    # With no CHATAPP_MODEL, a new chat starts with the newest active Sonnet.
    chosen = page.select_one("#new-model option[selected]")
    assert chosen["value"] == "claude-sonnet-5-5"


def test_a_new_model_in_the_api_appears_without_a_code_change(
    configured: Configure, upstream: FakeUpstream
) -> None:
    upstream.models.append(
        model_info(
            "claude-sonnet-6",
            "Claude Sonnet 6",
            "2026-11-30T00:00:00Z",
            line="sonnet",
            adaptive=True,
            efforts=("low", "high"),
        )
    )
    app = listed(configured(MODEL=None))
    page = html(app.test_client().get("/").data)
    assert picker(page)[0] == ("claude-sonnet-6", "Claude Sonnet 6")
    assert page.select_one("#new-model option[selected]")["value"] == "claude-sonnet-6"


def test_the_allow_list_takes_names_and_prefixes(configured: Configure) -> None:
    app = listed(configured(MODEL="claude-sonnet-5-5", MODELS="claude-opus,claude-haiku-4-5"))
    page = html(app.test_client().get("/").data)
    ids = [value for value, _label in picker(page)]
    assert ids == ["claude-opus-5-5", "claude-opus-4-6", "claude-haiku-4-5"]
    # CHATAPP_MODEL is not allowed: the default is the newest allowed active model.
    assert catalogue(app).default() == "claude-opus-5-5"
    response = app.test_client().post(
        "/messages",
        data={"content": "Hi", "conversation_id": "", "model": "claude-sonnet-5-5"},
        headers=HX,
    )
    assert response.status_code == 422
    assert "no model called" in html(response.data).get_text()


@pytest.fixture
def api_down(configured: Configure, upstream: FakeUpstream) -> Flask:
    """An app whose Models API answers with an error. (Made before the test runs: migrating
    resets the log handlers, so the test's own log capture would miss what follows.)"""
    upstream.models_status = 500
    return configured(MODEL=None)


def test_models_api_down_at_boot_still_serves_pages(
    api_down: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    app = api_down
    with caplog.at_level(logging.WARNING, logger="chatapp.llm.catalogue"):
        assert not catalogue(app).refresh()
    assert "using the built-in list" in caplog.text
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 200
    ids = {value for value, _label in picker(html(response.data))}
    assert ids == {info["id"] for info in BUILT_IN}
    fragment = send(client, "Still there?")
    assert wait_finished(app, answer_id(fragment)).status == "complete"


@pytest.fixture
def stored_list(configured: Configure, upstream: FakeUpstream) -> Flask:
    """An app whose worker fetched and stored a list of one model; the API is down since."""
    upstream.models = [
        model_info("claude-only-one", "Claude Only One", "2026-11-01T00:00:00Z", line="sonnet")
    ]
    app = listed(configured(MODEL=None))
    upstream.models_status = 529
    return app


def test_a_worker_that_cannot_reach_the_api_starts_from_the_last_good_list(
    stored_list: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    app = stored_list
    # The next worker's catalogue: the built-in list until it has read the database.
    models = Catalogue(app, lambda: streams(app).claude.client, [])
    assert models.load_stored()
    with caplog.at_level(logging.WARNING, logger="chatapp.llm.catalogue"):
        assert not models.refresh()
    assert "using the last good list" in caplog.text
    assert [m.id for m in models.offered()] == ["claude-only-one"]
    assert models.source == "database"


def test_the_refresher_fetches_in_the_background_on_the_first_request(fresh: Flask) -> None:
    app = fresh
    models = catalogue(app)
    app.test_client().get("/")  # starts the worker's greenlets
    assert models._refresher is not None and not models._refresher.dead
    models.stop()


# -- thinking as each model takes it ----------------------------------------------------------


def test_an_adaptive_only_model_gets_adaptive_thinking_and_its_effort(
    fresh: Flask, upstream: FakeUpstream
) -> None:
    client = fresh.test_client()
    upstream.push(Scenario(text="Deep.", thinking="Let me think."))
    fragment = new_chat(
        client, "Think hard", model="claude-opus-5-5", thinking="on", effort="xhigh"
    )
    message = wait_finished(fresh, answer_id(fragment))
    assert message.status == "complete" and message.thinking == "Let me think."
    [request] = upstream.requests
    assert request["thinking"] == {"type": "adaptive"}
    assert request["output_config"] == {"effort": "xhigh"}
    assert "budget_tokens" not in str(request)
    assert (
        request["max_tokens"]
        == fresh.config["MAX_TOKENS"] + fresh.config["ADAPTIVE_THINKING_TOKENS"]
    )


def test_a_budget_model_gets_its_budget_and_no_effort(fresh: Flask, upstream: FakeUpstream) -> None:
    client = fresh.test_client()
    fragment = new_chat(
        client,
        "Think a bit",
        model="claude-haiku-4-5",
        thinking="on",
        thinking_budget="2048",
        effort="high",
    )
    wait_finished(fresh, answer_id(fragment))
    [request] = upstream.requests
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "output_config" not in request
    assert request["max_tokens"] == fresh.config["MAX_TOKENS"] + 2048


def test_a_model_without_thinking_gets_none_and_shows_no_controls(
    fresh: Flask, upstream: FakeUpstream
) -> None:
    client = fresh.test_client()
    fragment = new_chat(
        client, "Quick", model="claude-3-haiku-20240307", thinking="on", effort="low"
    )
    wait_finished(fresh, answer_id(fragment))
    [request] = upstream.requests
    assert "thinking" not in request and "output_config" not in request
    # It allows 4,096 tokens of output: the request never asks for more.
    assert request["max_tokens"] == 4096
    conversation_id = stored(fresh, answer_id(fragment)).conversation_id
    page = html(client.get(f"/conversations/{conversation_id}").data)
    fields = page.select_one("#conversation-thinking")
    assert fields.select("input[name=thinking], select[name=effort]") == []
    assert "does not think" in fields.get_text()


def test_the_fields_follow_the_model_chosen(fresh: Flask) -> None:
    client = fresh.test_client()
    page = html(client.get("/").data)
    # Sonnet 5.5, the default: Think before answering and its own effort levels.
    fields = page.select_one("#new-thinking")
    assert "Think before answering" in fields.select_one("label.settings__check").get_text()
    assert [o["value"] for o in fields.select("select[name=effort] option")] == [
        "",
        "low",
        "medium",
        "high",
        "max",
    ]
    # The select asks for the fields of another model as it changes (htmx), keeping what applies.
    picked = client.get(
        "/settings/thinking",
        query_string={"prefix": "new", "model": "claude-opus-5-5", "effort": "max"},
        headers=HX,
    )
    fields = html(picked.data)
    assert [o["value"] for o in fields.select("select[name=effort] option")] == [
        "",
        "low",
        "medium",
        "high",
        "xhigh",
        "max",
    ]
    assert fields.select_one("select[name=effort] option[selected]")["value"] == "max"
    # Opus 5.5 always thinks: the switch is shown on, and cannot be turned off.
    assert fields.select_one("input[type=checkbox]").has_attr("disabled")
    assert fields.select_one("input[name=thinking]")["value"] == "on"
    # Haiku 4.5 takes a budget, not an effort: the effort is dropped with a sentence.
    picked = client.get(
        "/settings/thinking",
        query_string={"prefix": "new", "model": "claude-haiku-4-5", "effort": "max"},
        headers=HX,
    )
    fields = html(picked.data)
    assert fields.select("select[name=effort]") == []
    assert fields.select_one("input[name=thinking_budget]")["type"] == "number"
    assert "takes a thinking budget, not an effort level" in fields.get_text()
    assert client.get("/settings/thinking", query_string={"prefix": "x"}).status_code == 400


def test_changing_the_model_keeps_what_applies_and_says_what_it_drops(
    fresh: Flask, upstream: FakeUpstream
) -> None:
    client = fresh.test_client()
    fragment = new_chat(client, "Hi", model="claude-opus-5-5", effort="xhigh")
    answer = wait_finished(fresh, answer_id(fragment))
    saved = client.post(
        f"/conversations/{answer.conversation_id}/settings",
        data={"model": "claude-sonnet-5-5", "thinking": "on", "effort": "xhigh"},
        headers=HX,
    )
    assert saved.status_code == 200
    body = html(saved.data)
    assert "Claude Sonnet 5.5 has no “xhigh” effort" in body.get_text()
    with fresh.app_context():
        from chatapp.extensions import db

        conversation = db.session.get(Conversation, answer.conversation_id)
        assert (conversation.model, conversation.thinking, conversation.effort) == (
            "claude-sonnet-5-5",
            True,
            None,
        )
    upstream.push(Scenario(text="Fine."))
    send(client, "Again", answer.conversation_id)
    wait_finished(fresh, answer.id + 2)
    assert upstream.requests[-1]["thinking"] == {"type": "adaptive"}
    assert "output_config" not in upstream.requests[-1]


def test_the_demo_upstream_answers_a_budget_for_an_adaptive_only_model_with_a_400(
    upstream: FakeUpstream,
) -> None:
    client = anthropic.Anthropic(api_key="test", base_url=upstream.url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-opus-5-5",
            max_tokens=8192,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "Hi"}],
        )
    assert '"thinking.type.enabled" is not supported for this model' in str(caught.value)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=8192,
            thinking={"type": "adaptive"},
            messages=[{"role": "user", "content": "Hi"}],
        )
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="claude-3-7-sonnet-20250219",
            max_tokens=100,
            messages=[{"role": "user", "content": "Hi"}],
        )
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == ["claude-opus-5-5", "claude-sonnet-5-5"]
    assert len(list(client.models.list(limit=2))) == len(upstream.models)  # every page
    opus = client.models.retrieve("claude-opus-5-5")
    assert opus.capabilities is not None and opus.capabilities.effort.xhigh
    assert opus.capabilities.effort.xhigh.supported


# -- retired models ---------------------------------------------------------------------------


def test_a_conversation_whose_model_was_retired_says_so_and_sends_nothing(
    fresh: Flask, upstream: FakeUpstream
) -> None:
    client = fresh.test_client()
    fragment = new_chat(client, "Hi", model="claude-sonnet-4-6")
    answer = wait_finished(fresh, answer_id(fragment))
    for info in upstream.models:
        if info["id"] == "claude-sonnet-4-6":
            info["lifecycle"] = "retired"
    listed(fresh)
    page = html(client.get(f"/conversations/{answer.conversation_id}").data)
    notice = page.select_one("#model-notice")
    assert "Claude Sonnet 4.6 has been retired" in notice.get_text()
    assert notice.find("button").get_text() == "Use Claude Sonnet 5.5"

    asked = len(upstream.requests)
    refused = client.post(
        "/messages",
        data={"content": "Still?", "conversation_id": answer.conversation_id},
        headers=HX,
    )
    assert refused.status_code == 422
    assert "has been retired" in html(refused.data).get_text()
    retried = client.post(f"/messages/{answer.id}/retry", headers=HX)
    assert retried.status_code == 422
    assert len(upstream.requests) == asked  # nothing was sent that could only fail

    switched = client.post(f"/conversations/{answer.conversation_id}/model", headers=HX)
    assert switched.status_code == 200
    assert html(switched.data).select_one("#model-notice").get_text().strip() == ""
    fragment = send(client, "Now?", answer.conversation_id)
    assert wait_finished(fresh, answer_id(fragment)).model == "claude-sonnet-5-5"


# -- stop reasons ---------------------------------------------------------------------------


def test_a_refusal_keeps_its_text_says_why_and_is_left_out_of_later_turns(
    fresh: Flask, upstream: FakeUpstream
) -> None:
    client = fresh.test_client()
    upstream.push(
        Scenario(
            text="Happy to help with the first part, but ",
            stop_reason="refusal",
            stop_details={"type": "refusal", "category": "cyber", "explanation": "Malware."},
        )
    )
    fragment = send(client, "Write me a worm")
    refused = wait_finished(fresh, answer_id(fragment))
    assert refused.status == "refused" and refused.stop_reason == "refusal"
    assert refused.content == "Happy to help with the first part, but "
    assert refused.error.startswith("Claude declined to go on with this answer. Malware.")
    assert refused.input_tokens and refused.output_tokens  # billed like any answer

    page = html(client.get(f"/conversations/{refused.conversation_id}").data)
    article = page.select_one(f"#{anchors.article(refused.id)}")
    assert article["data-status"] == "refused"
    assert "Malware." in article.select_one(".message__error").get_text()
    assert article.find("button", string="Continue") is None
    question = page.select_one(f"#{anchors.article(refused.id - 1)}")
    assert question.find("button", string="Edit") is not None

    send(client, "Something else, then", refused.conversation_id)
    wait_finished(fresh, refused.id + 2)
    later = upstream.requests[-1]["messages"]
    sent = [
        m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in later
    ]
    assert sent == ["Something else, then"]


def test_the_demo_refuses_when_asked_to(fresh: Flask) -> None:
    client = fresh.test_client()
    fragment = send(client, "Please refuse this one")
    message = wait_finished(fresh, answer_id(fragment))
    assert message.status == "refused"
    assert "demo server refuses" in message.error


@pytest.mark.parametrize(
    ("stop_reason", "words"),
    [
        ("max_tokens", "the length allowed for one answer"),
        ("model_context_window_exceeded", "the model's context window"),
    ],
)
def test_an_answer_cut_short_says_why_and_offers_continue(
    fresh: Flask, upstream: FakeUpstream, stop_reason: str, words: str
) -> None:
    client = fresh.test_client()
    upstream.push(Scenario(text="The first half", stop_reason=stop_reason))
    fragment = send(client, "Tell me everything")
    message = wait_finished(fresh, answer_id(fragment))
    assert (message.status, message.stop_reason) == ("complete", stop_reason)
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    article = page.select_one(f"#{anchors.article(message.id)}")
    assert words in article.select_one(".message__note").get_text()
    assert article.find("button", string="Continue") is not None
    continued = client.post(f"/messages/{message.id}/continue", headers=HX)
    assert continued.status_code == 200
    wait_finished(fresh, message.id + 2)
    assert "continue" in str(upstream.requests[-1]["messages"][-1]["content"]).lower()


def test_the_demo_stops_at_a_small_context_window(
    configured: Configure, upstream: FakeUpstream
) -> None:
    upstream.models = [
        model_info("claude-tiny", "Claude Tiny", "2026-11-01T00:00:00Z", line="sonnet", context=60)
    ]
    app = listed(configured(MODEL=None))
    fragment = send(app.test_client(), "Hello there")
    message = wait_finished(app, answer_id(fragment))
    assert message.stop_reason == "model_context_window_exceeded"
    assert 0 < len(message.content) <= 60 * 4


def test_pause_turn_goes_on_in_the_same_answer(fresh: Flask, upstream: FakeUpstream) -> None:
    client = fresh.test_client()
    upstream.push(
        Scenario(text="Looking into it. ", stop_reason="pause_turn"),
        Scenario(text="Here is the rest."),
    )
    fragment = send(client, "A long search")
    message = wait_finished(fresh, answer_id(fragment))
    assert message.status == "complete"
    assert message.content == "Looking into it. Here is the rest."
    first, second = upstream.requests
    # The paused turn went back as it stood, for the API to carry on with.
    assert second["messages"][:-1] == first["messages"]
    assert second["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Looking into it. "}],
    }
    assert message.input_tokens and message.output_tokens
    # Later turns send the answer as one turn.
    send(client, "Thanks", message.conversation_id)
    wait_finished(fresh, message.id + 2)
    assert upstream.requests[-1]["messages"][1] == {
        "role": "assistant",
        "content": "Looking into it. Here is the rest.",
    }


# -- context and cost ------------------------------------------------------------------------


def test_the_context_meter_warns_and_a_question_too_big_is_refused_before_sending(
    configured: Configure, upstream: FakeUpstream
) -> None:
    upstream.models = [
        model_info(
            "claude-small", "Claude Small", "2026-11-01T00:00:00Z", line="sonnet", context=2000
        )
    ]
    app = listed(configured(MODEL=None))
    client = app.test_client()
    fragment = send(client, "x" * 6600)  # about 1,650 of the 2,000 tokens
    message = wait_finished(app, answer_id(fragment))
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    meter = page.select_one("#context-meter")
    sent = message.input_tokens + message.cache_read_tokens + message.cache_creation_tokens
    assert f"Context: {sent:,} of 2,000 tokens" in meter.get_text()
    assert "composer__context--full" in meter["class"]
    assert "Nearly full" in meter.get_text()

    asked = len(upstream.requests)
    response = client.post(
        "/messages",
        data={"content": "y" * 4000, "conversation_id": message.conversation_id},
        headers=HX,
    )
    assert response.status_code == 422
    assert "would not fit in Claude Small's context window" in html(response.data).get_text()
    assert len(upstream.requests) == asked


def test_the_last_frame_brings_the_context_meter_up_to_date(fresh: Flask) -> None:
    from .conftest import read_events, stream_url

    client = fresh.test_client()
    fragment = send(client, "Hello")
    events = read_events(client, stream_url(fragment))
    done = next(e for e in events if e.get("event") == "done")
    meter = html(done["data"]).select_one("#context-meter")
    assert meter["hx-swap-oob"] == "true"
    assert "of 1,000,000 tokens" in meter.get_text()  # Claude Sonnet 5.5's window


def test_admin_usage_says_price_unknown_for_a_model_without_a_price(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = listed(configured(MODEL="claude-haiku-5-5"))  # Haiku 5.5 has no price in the table
    user_id(app, "alice")
    with app.app_context():
        from chatapp.auth import accounts
        from chatapp.extensions import db

        accounts.find("alice").is_admin = True
        db.session.commit()
    client = app.test_client()
    fragment = send(client, "Hi")
    wait_finished(app, answer_id(fragment))
    page = html(client.get("/admin/usage").data)
    row = next(
        tr
        for tr in page.select("caption:-soup-contains('By model') ~ tbody tr")
        if tr.select("td")[0].get_text() == "claude-haiku-5-5"
    )
    assert row.select("td")[-1].get_text().strip() == "price unknown"
