"""The tenth turn of a conversation that began with a 20 MB PDF: base64 in every request, or
uploaded once with the Files API and referred to by `file_id`.

Prints, for each way, the size of the tenth request's body and the time from sending it to
its first event, against the demo upstream on loopback (which reads and parses the whole
body, as the API must); and what that body would take to upload at 100 and 20 Mbit/s.
Run it with `.venv/bin/python bench/attachments.py` (about a minute).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import base64  # noqa: E402 - after patching, as everything that opens sockets
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import anthropic  # noqa: E402
from pypdf import PdfWriter  # noqa: E402

from chatapp.llm.demo import FakeUpstream, Pace  # noqa: E402

MB = 1024 * 1024
TURNS = 10
RUNS = 5
FAST = Pace(first_token_seconds=(0.0, 0.0), tokens_per_second=(5000.0, 5000.0))


def big_pdf(size: int) -> bytes:
    """A 3-page PDF of about `size` bytes (the rest is an embedded file)."""
    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(width=612, height=792)
    writer.add_attachment("padding.bin", os.urandom(size))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def conversation(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Ten user turns (the first with the document) and nine answers."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [document, {"type": "text", "text": "What does it say?"}]}
    ]
    for turn in range(1, TURNS):
        messages.append({"role": "assistant", "content": f"Answer {turn}: " + "words " * 150})
        messages.append({"role": "user", "content": f"Question {turn + 1}: and then?"})
    return messages


def tenth_turn(client: anthropic.Anthropic, messages: list[dict[str, Any]]) -> float:
    """Seconds from sending the request to its first event."""
    started = time.perf_counter()
    with client.messages.create(
        model="claude-sonnet-5-5", max_tokens=64, messages=messages, stream=True
    ) as stream:
        for _event in stream:
            return time.perf_counter() - started
    raise RuntimeError("no event")


def main() -> None:
    pdf = big_pdf(20 * MB)
    upstream = FakeUpstream(FAST)
    url = upstream.start()
    client = anthropic.Anthropic(api_key="bench", base_url=url, max_retries=0, timeout=120)
    encoded = base64.standard_b64encode(pdf).decode("ascii")
    inline = conversation(
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": encoded},
            "title": "big.pdf",
        }
    )
    started = time.perf_counter()
    uploaded = client.files.upload(file=("big.pdf", pdf, "application/pdf"))
    upload_seconds = time.perf_counter() - started
    referred = conversation(
        {"type": "document", "source": {"type": "file", "file_id": uploaded.id}, "title": "big.pdf"}
    )
    print(f"PDF: {len(pdf) / MB:.1f} MB; uploaded once to the Files API in {upload_seconds:.2f} s")
    print(
        f"{'way':<8} {'10th request':>13} {'encoding it':>12} {'to first event':>15} "
        f"{'upload at 100 / 20 Mbit/s':>26}"
    )
    for name, messages in (("base64", inline), ("file_id", referred)):
        request = {"model": "claude-sonnet-5-5", "max_tokens": 64, "messages": messages}
        started = time.perf_counter()
        body = len(json.dumps({**request, "stream": True}))
        encoding = time.perf_counter() - started  # the worker holds every stream meanwhile
        times = [tenth_turn(client, messages) for _ in range(RUNS)]
        fast, slow = body * 8 / 100e6, body * 8 / 20e6
        print(
            f"{name:<8} {body / MB:>10.2f} MB {encoding * 1000:>9.1f} ms "
            f"{statistics.median(times) * 1000:>12.0f} ms {fast:>12.2f} s / {slow:.2f} s"
        )
    upstream.stop()


if __name__ == "__main__":
    main()
