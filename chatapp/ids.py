"""What an id or a position may be, wherever one arrives: a URL, a form, a header.

Ids are rows' integer keys, so at most 2**31 - 1 (PostgreSQL's `integer`); positions are
character offsets into an answer, which fit in the same bound many times over. A value of 25
digits, with a sign, or in other scripts' digits (`²` passes str.isdigit, and int() takes
Arabic-Indic digits) is not one: a URL with it matches no route (404), and a form field or
header with it is refused (400), before any of it reaches the database.
"""

from __future__ import annotations

from werkzeug.routing import BaseConverter, ValidationError

LARGEST = 2**31 - 1


def parse(value: str | None) -> int | None:
    """The id or position `value` spells in ASCII digits, or None if it spells none."""
    if value is None or not value.isascii() or not value.isdecimal() or len(value) > 10:
        return None
    number = int(value)
    return number if number <= LARGEST else None


class IdConverter(BaseConverter):
    """`<id:name>` in a route: an id as above; anything else is a 404."""

    regex = r"[0-9]{1,10}"
    weight = 50  # as specific as werkzeug's own int converter

    def to_python(self, value: str) -> int:
        number = parse(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value: object) -> str:
        return str(int(value))  # type: ignore[call-overload]
