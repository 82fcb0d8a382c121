"""What a file is, decided from its bytes: an image Claude can see, a PDF, or a text file.

The name and the browser's claim are never believed. An image must open as one of the four
kinds the API takes (PNG, JPEG, GIF, WebP), a PDF must parse and say how many pages it has,
and a text file must be UTF-8 without NUL bytes; anything else is refused with a sentence.
Parsing a large PDF is pure Python, so it runs in the hub's thread pool: the worker's streams
keep moving meanwhile.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Protocol

import gevent
from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

# The API's own limits: an image of at most 5 MB and 8,000 pixels a side.
IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_SIDE = 8000
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# Raster images the browser may show inline; everything else is served as a download.
INLINE_TYPES = frozenset(IMAGE_TYPES.values())
PDF_TYPE = "application/pdf"
TEXT_TYPE = "text/plain"


class FileRefused(ValueError):
    """A file that cannot be attached; the message says why, for the page."""


@dataclass(frozen=True)
class Inspected:
    """What a file turned out to be."""

    kind: str  # "image" | "pdf" | "text"
    media_type: str
    width: int | None = None
    height: int | None = None
    pages: int | None = None


class Described(Protocol):
    """What describing a file needs (an Inspected, an AttachedFile, an Attachment)."""

    @property
    def kind(self) -> str: ...
    @property
    def media_type(self) -> str: ...
    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def pages(self) -> int | None: ...


def describe(file: Described) -> str:
    """A file's kind and size in words: "PNG image, 1280 × 720", "PDF, 12 pages", "text"."""
    if file.kind == "image":
        kind = file.media_type.removeprefix("image/").upper()
        return f"{kind} image, {file.width} × {file.height}"
    if file.kind == "pdf":
        return f"PDF, {file.pages} page{'s' if file.pages != 1 else ''}"
    return "text"


class Sized(Described, Protocol):
    @property
    def size(self) -> int: ...


def estimated_tokens(file: Sized) -> int:
    """About how many input tokens the file costs, before the API says: an image about one
    per 750 pixels (the API scales large ones down to about 1,600 tokens), a PDF page about
    2,000 (its text and its picture), text one per four bytes."""
    if file.kind == "image":
        return min((file.width or 0) * (file.height or 0) // 750, 1600)
    if file.kind == "pdf":
        return (file.pages or 1) * 2000
    return file.size // 4


def inspect(name: str, data: bytes, *, max_pdf_pages: int) -> Inspected:
    """What `data` is, or FileRefused saying why it cannot be attached."""
    if not data:
        raise FileRefused(f"{name} is empty.")
    if data.startswith(b"%PDF-"):
        return _pdf(name, data, max_pdf_pages)
    if _looks_like_image(data):
        return _image(name, data)
    if _is_text(data):
        return Inspected("text", TEXT_TYPE)
    raise FileRefused(
        f"{name} is not a file Claude can read: attach PNG, JPEG, GIF or WebP images, PDFs, "
        "or text files (plain text, markdown, CSV, JSON, code, logs)."
    )


def text_of(data: bytes) -> str:
    """A text file's text (UTF-8, without a byte-order mark)."""
    return data.decode("utf-8-sig")


def _looks_like_image(data: bytes) -> bool:
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or data[:6] in (b"GIF87a", b"GIF89a")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


def _image(name: str, data: bytes) -> Inspected:
    if len(data) > IMAGE_BYTES:
        raise FileRefused(
            f"{name} is {_mb(len(data))}; Claude takes images of at most {_mb(IMAGE_BYTES)}."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, size = image.format, image.size
                image.verify()  # checks the structure (and PNG's checksums) without decoding
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FileRefused(f"{name} looks like an image but does not open as one.") from exc
    media_type = IMAGE_TYPES.get(kind or "")
    if media_type is None:
        raise FileRefused(f"{name} is a {kind} image; Claude takes PNG, JPEG, GIF and WebP.")
    width, height = size
    if max(width, height) > IMAGE_SIDE:
        raise FileRefused(
            f"{name} is {width} × {height} pixels; Claude takes images of at most "
            f"{IMAGE_SIDE:,} pixels a side."
        )
    return Inspected("image", media_type, width=width, height=height)


def _pdf(name: str, data: bytes, max_pages: int) -> Inspected:
    try:
        pages = gevent.get_hub().threadpool.apply(_count_pages, (data,))
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise FileRefused(f"{name} looks like a PDF but does not open as one.") from exc
    if pages < 1:
        raise FileRefused(f"{name} is a PDF without pages.")
    if pages > max_pages:
        raise FileRefused(
            f"{name} has {pages:,} pages; Claude reads PDFs of at most {max_pages:,} pages."
        )
    return Inspected("pdf", PDF_TYPE, pages=pages)


def _count_pages(data: bytes) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a damaged but readable PDF is still read
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ValueError("encrypted")
        return len(reader.pages)


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def filesize(size: int) -> str:
    """A file's size for people: 820 bytes, 14 KB, 2.3 MB."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return _mb(size)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
