"""A small stand-in for the browser's side of htmx's out-of-band swaps, for stream tests.

It applies the `hx-swap-oob` fragments of SSE events to an HTML document the way htmx does for
the swaps chatapp uses, so tests can check what a reader would see without a browser.
"""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag


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

    def element(self, element_id: str) -> Tag:
        found = self.soup.find(id=element_id)
        assert isinstance(found, Tag), f"no #{element_id}"
        return found

    def inner_html(self, element_id: str) -> str:
        return "".join(str(child) for child in self.element(element_id).contents)

    def text(self, element_id: str) -> str:
        return self.element(element_id).get_text()
