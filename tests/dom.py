"""A small stand-in for the browser's side of htmx's out-of-band swaps, for stream tests.

It applies the `hx-swap-oob` fragments of SSE events to an HTML document the way htmx does for
the swaps chatapp uses, so tests can check what a reader would see without a browser.
"""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag

from chatapp.render import anchors


def fragment(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def normalized(html: str) -> str:
    """`html` as this module serializes it, to compare with a document's inner HTML."""
    return str(fragment(html))


class Document:
    """An HTML document that takes out-of-band swaps."""

    def __init__(self, html: str = "") -> None:
        self.soup = fragment(html)

    def apply(self, html: str) -> None:
        """Apply every top-level element of `html` that carries `hx-swap-oob`."""
        for element in list(fragment(html).find_all(recursive=False)):
            spec = element.get("hx-swap-oob")
            if spec is None:
                continue
            del element["hx-swap-oob"]
            swap, _, selector = str(spec).partition(":")
            if swap == "true":
                self._keep_content(element)
                target = self.soup.find(id=element.get("id"))
                if target is None:
                    self.soup.append(element)
                else:
                    target.replace_with(element)
                continue
            assert selector.startswith("#"), spec
            target = self.soup.find(id=selector[1:])
            if target is None:
                continue  # htmx ignores a swap whose target is missing
            children = list(element.contents)
            if swap == "innerHTML":
                target.clear()
                target.extend(children)
            elif swap == "beforeend":
                target.extend(children)
            elif swap == "beforebegin":
                for child in children:
                    target.insert_before(child)
            elif swap == "delete":
                target.decompose()
            else:
                raise AssertionError(f"unexpected swap {spec!r}")

    def _keep_content(self, element: Tag) -> None:
        """As app.js does: a finished message keeps the content its page streamed."""
        for slot in element.select("[data-content][data-keep]"):
            shown = self.soup.find(id=slot.get("id"))
            if shown is not None:
                slot.replace_with(shown.extract())

    def element(self, element_id: str) -> Tag:
        found = self.soup.find(id=element_id)
        assert isinstance(found, Tag), f"no #{element_id}"
        return found

    def inner_html(self, element_id: str) -> str:
        return "".join(str(child) for child in self.element(element_id).contents)

    def text(self, element_id: str) -> str:
        return self.element(element_id).get_text()


class Screen:
    """What one reader's page shows of one answer, built from the events of its streams."""

    def __init__(self, message_id: int, page: str | None = None) -> None:
        self.message_id = message_id
        self.content_id = anchors.content(message_id)
        self.document = Document(
            page
            or f'<article id="{anchors.article(message_id)}"><div id="{self.content_id}">'
            f'<div class="tail" id="{anchors.tail(message_id)}"></div></div></article>'
        )
        self.last_id: str | None = None
        self.finished = False

    def take(self, events: list[dict[str, str]]) -> Screen:
        """Apply a stream's `frame` and `done` events, in order."""
        for event in events:
            if event.get("event") in ("frame", "done"):
                self.document.apply(event["data"])
                self.last_id = event.get("id", self.last_id)
                self.finished = self.finished or event["event"] == "done"
        return self

    @property
    def html(self) -> str:
        """The content's inner HTML."""
        return self.document.inner_html(self.content_id)

    @property
    def text(self) -> str:
        """The content's text, as a reader sees it."""
        return self.document.text(self.content_id)

    @property
    def offset(self) -> int:
        """How many characters of the answer the page has, by its last event id."""
        return int(self.last_id.rpartition(":")[2]) if self.last_id else 0


def rendered(text: str, message_id: int = 0) -> str:
    """What a reloaded page shows as the content of a finished answer with `text`."""
    from chatapp.render import render_answer

    return normalized(render_answer(text, message_id))


def streamed_html(events: list[dict[str, str]], message_id: int) -> str:
    """The content a fresh page shows after applying `events`."""
    return Screen(message_id).take(events).html
