"""The built-in tools: a calculator, the current time, and a search of one's own conversations.

Importing this module registers them, in that order.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..conversations import store
from ..extensions import db
from ..models import Conversation, User
from . import Tool, ToolContext, ToolError, register
from .record import plain_text

# -- calculator ---------------------------------------------------------------------------
#
# The expression is parsed into Python's syntax tree and walked here; nothing is ever
# compiled or run. gevent cannot stop a greenlet busy in a CPU loop, so every step is kept
# cheap: the text is short, the tree shallow, and no number may grow past MAX_INT_BITS
# (a power is refused before it is computed).

Number = int | float

MAX_EXPRESSION_CHARS = 1000
MAX_DEPTH = 200
MAX_INT_BITS = 10_000
MAX_FACTORIAL = 1000
MAX_ROUND_DIGITS = 1000

_TOO_LARGE = "The result is too large for the calculator."
_TOO_MANY_BITS = f"The result is too large for the calculator (more than {MAX_INT_BITS:,} bits)."


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise ToolError(_TOO_MANY_BITS)
    return base**exponent


def _factorial(number: Number) -> int:
    if not isinstance(number, int):
        raise ToolError("factorial() takes a whole number.")
    if number > MAX_FACTORIAL:
        raise ToolError(f"factorial() goes up to {MAX_FACTORIAL:,} here.")
    return math.factorial(number)


def _round(number: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(number)
    if not isinstance(ndigits, int):
        raise ToolError("round() takes a whole number of digits.")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        # round(10, -10**9) would work out 10 ** 10**9 first.
        raise ToolError(f"round() takes at most {MAX_ROUND_DIGITS:,} digits either way.")
    return round(number, ndigits)


_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "cbrt": math.cbrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "degrees": math.degrees,
    "radians": math.radians,
    "floor": math.floor,
    "ceil": math.ceil,
    "abs": abs,
    "round": _round,
    "factorial": _factorial,
    "gcd": math.gcd,
    "hypot": math.hypot,
    "min": min,
    "max": max,
}

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}

_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}

# What the refusal calls the constructs people are most likely to try.
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.BitXor: "^ (use ** for powers)",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
}
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attributes (such as x.y)",
    ast.Subscript: "indexing (such as x[0])",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dictionaries",
    ast.Lambda: "lambda functions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.IfExp: "if/else",
    ast.NamedExpr: "assignments (:=)",
    ast.Starred: "starred arguments (*x)",
    ast.JoinedStr: "text strings",
}

_FUNCTION_LIST = ", ".join(_FUNCTIONS)


def calculate(expression: str) -> str:
    """The value of an arithmetic expression, as text (whole numbers exactly)."""
    text = expression.strip()
    if not text:
        raise ToolError("The expression is empty.")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(
            f"The expression is {len(text):,} characters long; the calculator takes at most "
            f"{MAX_EXPRESSION_CHARS:,}. Split it into smaller calculations."
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"That is not a valid expression: {exc.msg}.") from None
    except ValueError as exc:  # a NUL character, on Python 3.11
        raise ToolError(f"That is not a valid expression: {exc}.") from None
    return str(_evaluate(tree.body, 0))


def _evaluate(node: ast.expr, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError(
            f"The expression is nested more than {MAX_DEPTH} levels deep. "
            "Split it into smaller calculations."
        )
    if isinstance(node, ast.Constant):
        # bool is a kind of int, so the type is compared exactly.
        if type(node.value) not in (int, float):
            raise ToolError(f"The calculator does not allow {_constant_kind(node.value)}.")
        return _checked(node.value)
    if isinstance(node, ast.Name):
        if node.id not in _CONSTANTS:
            raise ToolError(f"Unknown name {node.id!r}: the only names are pi, e and tau.")
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise ToolError(f"The calculator does not allow the operator {_symbol(node.op)}.")
        return _compute(unary, _evaluate(node.operand, depth + 1))
    if isinstance(node, ast.BinOp):
        binary = _BINARY.get(type(node.op))
        if binary is None:
            raise ToolError(f"The calculator does not allow the operator {_symbol(node.op)}.")
        left = _evaluate(node.left, depth + 1)
        return _compute(binary, left, _evaluate(node.right, depth + 1))
    if isinstance(node, ast.Call):
        return _call(node, depth)
    what = _CONSTRUCTS.get(type(node), type(node).__name__)
    raise ToolError(f"The calculator does not allow {what}.")


def _call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name):
        raise ToolError(f"Only these functions can be called, by name: {_FUNCTION_LIST}.")
    name = node.func.id
    function = _FUNCTIONS.get(name)
    if function is None:
        raise ToolError(f"The calculator has no function {name!r}. It has: {_FUNCTION_LIST}.")
    if node.keywords:
        raise ToolError(f"The calculator does not allow keyword arguments (in {name}()).")
    arguments = [_evaluate(argument, depth + 1) for argument in node.args]
    try:
        return _compute(function, *arguments)
    except ValueError as exc:
        raise ToolError(f"{name}() is undefined for those arguments ({exc}).") from None
    except TypeError as exc:
        raise ToolError(f"{name}() can't take those arguments ({exc}).") from None


def _compute(function: Callable[..., Any], *arguments: Number) -> Number:
    """Apply an operator or function, turning arithmetic failures into sentences."""
    try:
        result = function(*arguments)
    except ZeroDivisionError:
        raise ToolError("The expression divides by zero.") from None
    except OverflowError:
        raise ToolError(_TOO_LARGE) from None
    return _checked(result)


def _checked(value: object) -> Number:
    """The value, if it is a real number the calculator can go on with."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError(_TOO_LARGE)
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise ToolError(_TOO_MANY_BITS)
        return value
    # Only a power such as (-8) ** 0.5 leaves the real numbers.
    raise ToolError("The result is a complex number; the calculator works with real numbers only.")


def _constant_kind(value: object) -> str:
    if isinstance(value, str | bytes):
        return "text strings"
    if isinstance(value, complex):
        return "complex numbers"
    return f"the constant {value!r}"


def _symbol(op: ast.AST) -> str:
    return _SYMBOLS.get(type(op), type(op).__name__)


def _calculator(tool_input: dict[str, Any], context: ToolContext) -> str:
    expression = tool_input.get("expression")
    if not isinstance(expression, str):
        raise ToolError('Give the expression as text, for example "2 * (3 + 4)".')
    return calculate(expression)


# -- current time -------------------------------------------------------------------------


def _now() -> datetime:
    """The current moment (tests replace this)."""
    return datetime.now(UTC)


def _current_time(tool_input: dict[str, Any], context: ToolContext) -> str:
    name = tool_input.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ToolError("The time zone must be text, an IANA name such as Europe/Paris.")
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, such as "Europe"
        # ValueError: not a normalised relative path, or not a time zone file.
        raise ToolError(
            f"Unknown time zone {name!r}. Use an IANA name such as Europe/Paris."
        ) from None
    local = _now().astimezone(zone).replace(microsecond=0)
    offset = local.strftime("%z")  # "+0100"
    return (
        f"{local:%Y-%m-%d %H:%M:%S} {local:%Z} (UTC{offset[:3]}:{offset[3:]}), {local:%A}. "
        f"ISO 8601: {local.isoformat()}"
    )


# -- search of one's own conversations ----------------------------------------------------

SNIPPET_CHARS = 200
_SEARCH_LIMIT = (1, 20)


def _search_conversations(tool_input: dict[str, Any], context: ToolContext) -> str:
    query = tool_input.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolError("Give the words to look for as the query.")
    query = " ".join(query.split())
    limit = tool_input.get("limit")
    if limit is None:
        limit = 5
    low, high = _SEARCH_LIMIT
    if type(limit) is not int or not low <= limit <= high:
        raise ToolError(f"The limit must be a whole number from {low} to {high}.")
    with context.app.app_context():
        owner = db.session.get(User, context.user_id) if context.user_id is not None else None
        if owner is None:
            raise ToolError("This conversation belongs to no account: there is nothing to search.")
        # The conversation asking matches its own question: it is left out.
        found = store.search(owner, query, limit + 1)
        found = [c for c in found if c.id != context.conversation_id][:limit]
        if not found:
            return f"No conversations match {query!r}."
        lines = [f"Conversations matching {query!r}, most recent first:"]
        for number, conversation in enumerate(found, 1):
            lines.append(_describe(number, conversation, query))
    return "\n".join(lines)


def _describe(number: int, conversation: Conversation, query: str) -> str:
    """One numbered entry: title, id and date, and a snippet on the next line."""
    entry = (
        f"{number}. {conversation.title} (conversation {conversation.id}, "
        f"{conversation.updated_at:%Y-%m-%d})"
    )
    texts = [" ".join(plain_text(message.content).split()) for message in conversation.messages]
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    matching = next(
        ((text, found.start()) for text in texts if (found := pattern.search(text))), None
    )
    if matching is None:
        matching = (next((text for text in texts if text), ""), 0)
    snippet = _snippet(*matching)
    return f"{entry}\n   {snippet}" if snippet else entry


def _snippet(text: str, start: int) -> str:
    """At most SNIPPET_CHARS of the text, from a little before `start`."""
    begin = max(0, start - SNIPPET_CHARS // 4)
    lead = "…" if begin else ""
    piece = lead + text[begin:]
    if len(piece) > SNIPPET_CHARS:
        piece = piece[: SNIPPET_CHARS - 1] + "…"
    return piece


# -- registration --------------------------------------------------------------------------

register(
    Tool(
        name="calculator",
        title="Calculator",
        description=(
            "Evaluate an arithmetic expression exactly and return its value. Use it for any "
            "arithmetic instead of working it out yourself. Allowed: integers and decimals, "
            "+ - * / // % ** and parentheses, the constants pi, e and tau, and the functions "
            f"{_FUNCTION_LIST}. Trigonometry is in radians. Whole-number results are exact."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The expression, for example: sqrt(2) * (3 + 4) ** 2",
                }
            },
            "required": ["expression"],
        },
        run=_calculator,
    )
)

register(
    Tool(
        name="current_time",
        title="Current time",
        description=(
            "Get the current date, time and day of the week in a time zone. Use it whenever "
            "the answer depends on today's date or the time now."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "description": "An IANA time zone name such as Europe/Paris. Default: UTC.",
                }
            },
        },
        run=_current_time,
    )
)

register(
    Tool(
        name="search_conversations",
        title="Search my conversations",
        description=(
            "Search the user's own earlier conversations in this app by words in their "
            "titles or messages. Returns matching titles with their date and a short snippet, "
            "most recent first."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "The words to look for."},
                "limit": {
                    "type": "integer",
                    "minimum": _SEARCH_LIMIT[0],
                    "maximum": _SEARCH_LIMIT[1],
                    "description": "How many conversations to return at most. Default: 5.",
                },
            },
            "required": ["query"],
        },
        run=_search_conversations,
    )
)
