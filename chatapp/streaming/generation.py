"""A generation: one answer being written by Claude, in a greenlet of its own.

It calls the SDK, turns events into text, coalesces the text into frames (at most one per
`Streams.frame_interval`, the first at once), publishes them on the message's channel, hands
the text to the group-commit flusher and, whatever happens, ends in exactly one terminal
status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anthropic
import gevent
import httpx2
from gevent import Greenlet, GreenletExit
from gevent.lock import Semaphore

from .. import tools
from ..database import unreachable
from ..llm import errors, server_tools
from ..llm.files import lost_file
from ..llm.reply import Piece, Reply, ToolUse
from ..llm.request import build_request, next_round
from ..llm.thinking import options as model_options
from ..llm.tokens import estimate_tokens
from ..models import MessageState, Status
from ..tools.record import plain_text
from . import naming, persistence
from .channel import Channel, Subscription
from .frames import AnswerView, Frame
from .sweeper import INTERRUPTED

if TYPE_CHECKING:
    from flask import Flask
    from gevent.event import Event

    from ..llm.catalogue import Catalogue
    from ..llm.client import Claude
    from ..llm.files import Files
    from ..metrics import Meter
    from ..outage import Outage
    from .persistence import Flusher
    from .relay import Relay

log = logging.getLogger(__name__)


# The result Claude gets for a tool call made after the last round of tools allowed.
NOT_RUN = "Not run: this answer has used all its rounds of tools."
# An answer's end that the database did not take is tried again after this many seconds, then
# after twice as long each time, up to persistence.MAX_BACKOFF.
FIRST_RETRY = 0.25
DATABASE_AWAY = "The database did not answer, so this answer stopped. Try again in a moment."


class StopRequested(GreenletExit):
    """Raised inside a generation's greenlet when someone pressed Stop."""


@dataclass(frozen=True)
class AnswerSettings:
    """What every answer of a worker is written with, read from the app's config once."""

    listener_capacity: int  # frames a listener may fall behind before it is let go
    idle_timeout: float  # seconds the API may be silent mid-answer
    max_tokens: int
    adaptive_thinking_tokens: int
    max_tool_rounds: int
    abandon_after: float  # stop an answer nobody watched this long (0: never)
    title_model: str | None  # names conversations (None: the newest Haiku; "": nobody)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> AnswerSettings:
        return cls(
            listener_capacity=int(config["LISTENER_QUEUE_FRAMES"]),
            idle_timeout=float(config["UPSTREAM_IDLE_TIMEOUT"]),
            max_tokens=int(config["MAX_TOKENS"]),
            adaptive_thinking_tokens=int(config["ADAPTIVE_THINKING_TOKENS"]),
            max_tool_rounds=int(config["MAX_TOOL_ROUNDS"]),
            abandon_after=float(config["ABANDON_AFTER"]),
            title_model=config.get("TITLE_MODEL"),
        )


@dataclass
class AnswerServices:
    """What a generation calls on: the worker's client, catalogue, files, meter, flusher and
    relay, and the few things its registry (Streams) answers. The registry makes one per
    worker; a generation needs nothing else of it, so either can change alone."""

    app: Flask
    claude: Claude
    catalogue: Catalogue
    files: Files
    meter: Meter
    flusher: Flusher
    database: Outage
    stopping: Event  # the worker is going away: waiting writes give up
    relay: Relay | None
    watchers: Callable[[int], int]  # how many follow an answer (here, or workers following it)
    frame_interval: Callable[[], float]  # the least time between two frames, under this load
    forget: Callable[[Generation], None]  # the answer is over in this worker
    send_news: Callable[..., None]  # tell a conversation's open pages (its new title)
    ends_waiting: int = 0  # answers that ended and wait for the database to store their end


class Generation:
    """One answer in progress in this worker."""

    def __init__(
        self,
        services: AnswerServices,
        settings: AnswerSettings,
        message_id: int,
        conversation_id: int,
        question: persistence.Question | None = None,
    ) -> None:
        self.services = services
        self.settings = settings
        self._question = question
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.channel: Channel[Frame] = Channel(self.settings.listener_capacity)
        self.reply = Reply()
        self.view = AnswerView(message_id)  # what listeners are shown
        self.final: MessageState | None = None
        # Received, not yet sent to listeners; received, not yet in the database.
        self._pending_thinking: list[str] = []
        self._pending_text: list[str] = []
        self._unstored_thinking: list[str] = []
        self._unstored_text: list[str] = []
        self._stored_thinking = self._stored_text = 0
        self._last_frame_at = 0.0
        self._frame_timer: Greenlet | None = None
        self._publishing = Semaphore()
        self._greenlet: Greenlet | None = None
        self._finishing = False
        self._model: str | None = None
        self._first_question: str | None = None  # this is the conversation's first answer

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)
        if self.settings.abandon_after > 0:
            gevent.spawn(self._stop_when_abandoned, self.settings.abandon_after)

    def _stop_when_abandoned(self, after: float) -> None:
        """Stop the answer once nobody has watched it for `after` seconds.

        CHATAPP_ABANDON_AFTER sets `after`; it is off by default.
        """
        step = min(1.0, after / 4)
        unwatched = 0.0
        while not self.done:
            gevent.sleep(step)
            unwatched = unwatched + step if self.services.watchers(self.message_id) == 0 else 0.0
            if unwatched >= after:
                log.info(
                    "answer %s: nobody watched it for %gs; stopping it", self.message_id, after
                )
                self.stop()
                return

    def stop(self) -> None:
        """Stop the answer: the upstream request is closed, the text so far is kept."""
        self._end(StopRequested)

    def interrupt(self) -> None:
        """End the answer because the worker is going away; the text so far is kept."""
        self._end(GreenletExit)

    def _end(self, reason: type[GreenletExit]) -> None:
        if self._greenlet is not None and not self._greenlet.dead and not self._finishing:
            self._greenlet.kill(reason, block=False)

    def join(self, timeout: float | None = None) -> None:
        if self._greenlet is not None:
            self._greenlet.join(timeout)

    @property
    def done(self) -> bool:
        return self.final is not None

    # -- listeners --------------------------------------------------------------------------

    @property
    def published(self) -> int:
        """How far listeners have been sent (characters of thinking, then of text)."""
        return self.view.position

    def subscribe(self, offset: int) -> tuple[str, int, Subscription[Frame]]:
        """A reset to what listeners are shown now (unless both have nothing), its position,
        and a subscription for the frames that follow.

        All three are taken without yielding to another greenlet, so nothing falls between them.
        """
        reset = self.view.reset() if offset or self.view.position else ""
        return reset, self.view.position, self.channel.subscribe()

    def text(self) -> str:
        return self.reply.text

    def published_text(self) -> str:
        return self.text()[: self.view.text_length]

    def published_thinking(self) -> str:
        return self.reply.thinking[: self.view.thinking_length]

    def _published(self) -> tuple[str, str]:
        """(thinking, text): all that listeners have been sent."""
        return self.published_thinking(), self.published_text()

    def unstored(self) -> persistence.Unstored:
        """For the flusher: how much is stored, and what was received since."""
        usage = self.reply.usage
        started = self.reply.model is not None
        return persistence.Unstored(
            stored_text=self._stored_text,
            text="".join(self._unstored_text),
            text_pieces=len(self._unstored_text),
            stored_thinking=self._stored_thinking,
            thinking="".join(self._unstored_thinking),
            thinking_pieces=len(self._unstored_thinking),
            input_tokens=usage.input_tokens if started else None,
            cache_read_tokens=usage.cache_read_tokens if started else None,
            cache_creation_tokens=usage.cache_creation_tokens if started else None,
            web_search_requests=usage.web_search_requests or None,
        )

    def mark_stored(self, written: persistence.Unstored) -> None:
        del self._unstored_text[: written.text_pieces]
        del self._unstored_thinking[: written.thinking_pieces]
        self._stored_text += len(written.text)
        self._stored_thinking += len(written.thinking)

    # -- the answer -----------------------------------------------------------------------

    def _run(self) -> None:
        status, error = Status.FAILED, None
        try:
            question = self._question or persistence.load_question(
                self.services.app, self.message_id
            )
            self._model = question.model
            history = question.history
            self._first_question = history[0].content if len(history) == 1 else None
            request = self._request(question)
            self.reply = Reply()  # the clock for time to first token starts now
            try:
                status, error = self._answer(request, question)
            except anthropic.NotFoundError as exc:
                if self.reply.model is not None or not lost_file(exc):
                    raise
                # The API no longer has an uploaded copy (expired, or another demo upstream):
                # upload the files again, once, and ask again.
                log.info("answer %s: uploading its files again (%s)", self.message_id, exc)
                request = self._request(question, upload_again=True)
                self.reply = Reply()
                status, error = self._answer(request, question)
        except StopRequested:
            status = Status.CANCELLED
        except GreenletExit:
            status, error = Status.INTERRUPTED, INTERRUPTED
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            error = errors.describe(exc, idle_timeout=self.settings.idle_timeout)
            self.services.meter.upstream_errors.labels(errors.kind(exc)).inc()
            log.warning("answer %s failed: %s (%r)", self.message_id, error, exc)
        except Exception as exc:
            if unreachable(exc):  # reading the question (or a tool's query)
                error = DATABASE_AWAY
                self.services.database.failed(exc)
            else:
                error = errors.describe(exc)
                log.exception("answer %s failed unexpectedly", self.message_id)
        finally:
            owed = self.reply.end()  # the markers of a cited text cut short
            if owed:
                self._receive(owed)
            self._finish(status, error)

    def _request(
        self, question: persistence.Question, *, upload_again: bool = False
    ) -> dict[str, Any]:
        """The first request of the answer, its files uploaded (or uploaded again)."""
        model = self.services.catalogue.get(question.model)
        project = question.project
        blocks = self.services.files.blocks(
            question.history,
            upload_again=upload_again,
            citations=model is not None and model.citations,
            more=project.files if project is not None else (),
        )
        return build_request(
            model=question.model,
            system_prompt=question.system_prompt,
            history=question.history,
            options=model_options(
                question.thinking,
                model,
                max_tokens=self.settings.max_tokens,
                adaptive_tokens=self.settings.adaptive_thinking_tokens,
            ),
            tools=tools.definitions(question.tools),
            files=blocks,
            server_tools=server_tools.definitions(
                question.server_tools, model, self.services.app.config
            ),
            project_instructions=project.instructions if project is not None else "",
            project_files=[blocks[f.id] for f in project.files] if project is not None else None,
        )

    def _answer(
        self, request: dict[str, Any], question: persistence.Question
    ) -> tuple[Status, str | None]:
        """Stream the answer, round after round while Claude calls tools (or the API pauses a
        long turn of its server tools, `pause_turn`: the paused turn is sent back and goes on
        in the same answer); how it ended."""
        context = tools.ToolContext(self.services.app, question.user_id, self.conversation_id)
        most = self.settings.max_tool_rounds
        asking = request
        while True:
            with self.services.claude.client.messages.create(stream=True, **asking) as stream:
                for event in stream:
                    piece = self.reply.apply(event)
                    if piece:
                        self._receive(piece)
                    use = self.reply.take_tool_use()
                    if use is not None:
                        self._receive(self._use_tool(use, question.tools, context))
            if not self.reply.finished:
                self.services.meter.upstream_errors.labels("cut_off").inc()
                return Status.FAILED, errors.cut_off()
            if self.reply.stop_reason == "refusal":
                return Status.REFUSED, errors.refused(self.reply.refusal)
            if self.reply.stop_reason not in ("tool_use", "pause_turn"):
                return Status.COMPLETE, None
            if self.reply.rounds >= most:
                return Status.FAILED, errors.too_many_tool_rounds(most)
            self.reply.next_round()
            asking = next_round(request, self.reply.transcript, last=self.reply.rounds >= most)

    def _use_tool(self, use: ToolUse, allowed: list[str], context: tools.ToolContext) -> Piece:
        """Run a tool Claude called (in this greenlet, so Stop ends it) and record its result."""
        if self.reply.rounds >= self.settings.max_tool_rounds:
            result = tools.Outcome(NOT_RUN, True, 0)
        elif use.name not in allowed:
            result = tools.Outcome(f"The tool {use.name} is not switched on here.", True, 0)
        else:
            result = tools.run(use.name, use.input, context)
        self.services.meter.count_tool_call(use.name, result.is_error)
        return self.reply.tool_result(use, result.result, is_error=result.is_error, ms=result.ms)

    def _receive(self, piece: Piece) -> None:
        self.services.meter.characters.inc(len(piece.thinking) + len(piece.text))
        if piece.thinking:
            self._pending_thinking.append(piece.thinking)
            self._unstored_thinking.append(piece.thinking)
        if piece.text:
            self._pending_text.append(piece.text)
            self._unstored_text.append(piece.text)
        self.services.flusher.mark(self)
        wait = self._last_frame_at + self.services.frame_interval() - time.monotonic()
        if wait <= 0:
            self._publish_pending()
        elif self._frame_timer is None:
            self._frame_timer = gevent.spawn_later(wait, self._publish_pending)

    def _publish_pending(self) -> None:
        self._frame_timer = None  # first, before any switch: _finish relies on it
        # The timer's greenlet and the generation's can both get here, and relaying to Redis
        # switches greenlets: one frame at a time keeps frames and Redis's text in order.
        with self._publishing:
            self._publish_pending_now()

    def _publish_pending_now(self) -> None:
        if not self._pending_text and not self._pending_thinking:
            return
        thinking, text = "".join(self._pending_thinking), "".join(self._pending_text)
        self._pending_thinking.clear()
        self._pending_text.clear()
        frame = self.view.add(text, thinking)
        self._last_frame_at = time.monotonic()
        if self.services.relay is not None:
            # Into Redis first: what any reader has seen is then in Redis, should this worker
            # die before the next group commit (the sweeper recovers it from there). While
            # Redis is away this does nothing; listeners here get the frame all the same.
            self.services.relay.frame(self.message_id, frame, self._published)
        self.channel.publish(frame)
        self.services.meter.frames.inc()

    def _finish(self, status: Status, error: str | None) -> None:
        self._finishing = True
        if self._frame_timer is not None:
            self._frame_timer.kill(block=False)  # not started yet (it clears this first)
        self._publish_pending()  # waits for a timer's publication under way
        reply = self.reply
        unreported = reply.unreported_output
        if unreported is not None:
            # Cut short: the API bills what was written, but never said how many tokens. A
            # worker going away has no time to ask the counter, so that count is an estimate.
            if status is Status.INTERRUPTED:
                reply.count_output(estimate_tokens(unreported))
            else:
                model = reply.model or self._model or ""
                reply.count_output(self.services.claude.counter.count(model, unreported))
        usage = reply.usage
        started = reply.model is not None
        state = MessageState(
            id=self.message_id,
            conversation_id=self.conversation_id,
            role="assistant",
            content=reply.text,
            thinking=reply.thinking,
            status=status.value,
            error=error,
            model=reply.model or self._model,
            stop_reason=reply.stop_reason,
            # No message_start: the API never took the request, so there is no usage to show.
            input_tokens=usage.input_tokens if started else None,
            output_tokens=usage.output_tokens if started else None,
            cache_read_tokens=usage.cache_read_tokens if started else None,
            cache_creation_tokens=usage.cache_creation_tokens if started else None,
            web_search_requests=usage.web_search_requests or None,
            ttft_ms=reply.ttft_ms,
            duration_ms=round((time.monotonic() - reply.started) * 1000),
            transcript=reply.transcript if reply.beyond_text else None,
        )
        self.services.flusher.forget(self.message_id)
        if not self._store_end(state):
            # The worker is stopping and the database still does not answer. The row stays
            # `streaming`, with what group commits stored, for a sweeper to end as interrupted
            # (with the text Redis holds, if any). Its listeners are let go, to reconnect; none
            # is shown an end the database may never have.
            self.services.forget(self)
            self.channel.close_all()
            log.warning(
                "answer %s ended (%s), but the database took nothing before the worker "
                "stopped; a sweeper will end it as interrupted",
                self.message_id,
                state.status,
            )
            return
        self.final = state
        self.services.meter.answers.labels(state.status).inc()
        if started:
            self.services.meter.count_tokens(
                state.model or "",
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_creation_tokens=usage.cache_creation_tokens,
            )
        if state.ttft_ms is not None:
            self.services.meter.first_token.observe(state.ttft_ms / 1000)
        self.services.forget(self)
        self.channel.publish(self.view.finish(state))
        if self.services.relay is not None:
            self.services.relay.final(self.message_id)  # now, or once Redis is back
        log.info("generation finished", extra={"fields": _log_fields(state)})
        if status is Status.COMPLETE and self._first_question is not None:
            gevent.spawn(
                naming.name_conversation,
                self.services,
                self.conversation_id,
                self.settings.title_model,
                self._first_question,
                plain_text(state.content),
            )

    def _store_end(self, state: MessageState) -> bool:
        """Store the answer's end, trying again until the database takes it or the worker
        stops (then one last try). Meanwhile the answer stays live here: its listeners have
        all its text, but not yet an end that might never be stored. False if it never was."""
        services = self.services
        pause, waiting = FIRST_RETRY, False
        try:
            while True:
                try:
                    persistence.store_final(services.app, state)
                except Exception as exc:
                    if not waiting and not unreachable(exc):
                        log.exception("could not store the end of answer %s", self.message_id)
                    services.database.failed(exc)
                    services.meter.final_write_failures.inc()
                    if not waiting:
                        waiting = True
                        services.ends_waiting += 1
                else:
                    services.database.succeeded()
                    return True
                if services.stopping.is_set():
                    return False
                services.stopping.wait(pause)
                pause = min(pause * 2, persistence.MAX_BACKOFF)
        finally:
            if waiting:
                services.ends_waiting -= 1


def _log_fields(state: MessageState) -> dict[str, Any]:
    return {
        "conversation_id": state.conversation_id,
        "message_id": state.id,
        "model": state.model,
        "status": state.status,
        "stop_reason": state.stop_reason,
        "ttft_ms": state.ttft_ms,
        "duration_ms": state.duration_ms,
        "input_tokens": state.input_tokens,
        "output_tokens": state.output_tokens,
        "cache_read_tokens": state.cache_read_tokens,
        "cache_creation_tokens": state.cache_creation_tokens,
        "web_search_requests": state.web_search_requests,
    }
