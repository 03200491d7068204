"""The fault suite, agent requests: every request gets a status line and a JSON reason.

One row per request (the bytes sent, the status expected): 4xx for the client's faults; a
failure of the agent's own is a 500 whose reason goes to the log.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers.harness import Harness, _Writer, status_of

from torchenv.agent.daemon.http import serve_connection


def post(body: bytes, length: bytes | None = None) -> bytes:
    size = str(len(body)).encode() if length is None else length
    return b"POST /v1/reconcile HTTP/1.1\r\nContent-Length: " + size + b"\r\n\r\n" + body


ROWS = [
    ("garbage", b"GARBAGE\r\n\r\n", 400),
    ("HTTP/2.0", b"GET /v1/status HTTP/2.0\r\n\r\n", 505),
    ("no such path", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("DELETE", b"DELETE /v1/status HTTP/1.1\r\n\r\n", 405),
    ("GET on reconcile", b"GET /v1/reconcile HTTP/1.1\r\n\r\n", 405),
    ("a JSON array", post(b"[1,2]"), 400),
    ("not JSON", post(b"{x}"), 400),
    ("body shorter than its length", post(b"short", b"10"), 400),
    ("a body too large", post(b"", b"99999999"), 413),
    ("a negative length", post(b"", b"-1"), 400),
    ("chunked", b"POST /v1/reconcile HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ("an unknown environment", post(b'{"environment":"zzz"}'), 404),
    ("a bad header", b"GET /v1/status HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    ("a huge header", b"GET /v1/status HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n", 431),
    ("a binary header", b"GET /v1/status HTTP/1.1\r\n\xff\xfe: x\r\n\r\n", 400),
    ("a cut-off request line", b"GET /v1/sta", 400),
    # item 8 of issue 10: these closed the connection with a traceback in the log
    ("environment is an array", post(b'{"environment":[]}'), 400),
    ("environment is an object", post(b'{"environment":{}}'), 400),
    ("environment is a number", post(b'{"environment":7}'), 400),
    ("deeply nested JSON", post(b"[" * 50000), 400),
    ("a 5000-digit Content-Length", post(b"", b"9" * 5000), 413),
    ("a Content-Length of zeros", post(b"{}", b"0" * 5000 + b"2"), 202),
    # and what must work
    ("reconcile all", post(b""), 202),
    ("reconcile one", post(b'{"environment":"default"}'), 202),
    ("status", b"GET /v1/status HTTP/1.1\r\n\r\n", 200),
    ("host before the first probe", b"GET /v1/host HTTP/1.1\r\n\r\n", 503),
]


@pytest.mark.parametrize(("name", "payload", "status"), ROWS, ids=[r[0] for r in ROWS])
def test_every_request_gets_a_status_and_a_reason(
    tmp_path: Path, name: str, payload: bytes, status: int
) -> None:
    harness = Harness(tmp_path)
    answer = harness.answer(payload)
    assert status_of(answer) == status, answer[:300]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body.get("message") or body.get("accepted") or body.get("agent"), body
    assert harness.errors == []  # none of these is the agent's own failure


def test_a_failure_of_the_agent_is_a_logged_500() -> None:
    async def broken(_request: object) -> object:
        raise RuntimeError("the status could not be rendered")

    async def once() -> tuple[bytes, list[str]]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"GET /v1/status HTTP/1.1\r\n\r\n")
        reader.feed_eof()
        writer, logged = _Writer(), []
        await serve_connection(reader, writer, broken, on_error=logged.append)  # type: ignore[arg-type]
        return writer.data, logged

    answer, logged = asyncio.run(once())
    assert status_of(answer) == 500
    assert b"the status could not be rendered" in answer
    assert logged and "RuntimeError: the status could not be rendered" in logged[0]
