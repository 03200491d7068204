"""A small, strict HTTP/1.1 server side over a stream: bounded requests, one per connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from torchenv.agent.base.limits import MAX_REQUEST_BODY, MAX_REQUEST_HEAD

MAX_HEAD = MAX_REQUEST_HEAD
MAX_BODY = MAX_REQUEST_BODY
READ_TIMEOUT = 5.0
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """One request as read: method, path and query, headers (names lower-cased), body."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, f"the body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise HttpError(400, "the body's JSON is nested too deeply") from exc


@dataclass(frozen=True)
class Response:
    """One answer to send: status, body and its content type, extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + self.body


def json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    body = (json.dumps(value, indent=2, sort_keys=False) + "\n").encode()
    return Response(status, body, headers=headers or {})


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": REASONS.get(status, "error"), "message": message})


def parse_head(head: bytes) -> Request:
    """Request line and headers (without the body). Raises HttpError(4xx)."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError as exc:
        raise HttpError(400, "the request head is not ASCII") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1].startswith("/"):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not re.fullmatch(r"HTTP/1\.[01]", version):
        if re.fullmatch(r"HTTP/\d(\.\d)?", version):
            raise HttpError(505, f"{version} is not supported; use HTTP/1.1")
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(400, f"malformed header line {line[:40]!r}")
        key = name.lower()
        if key in headers and key in ("content-length", "transfer-encoding", "host"):
            raise HttpError(400, f"repeated {name} header")
        headers[key] = value.strip()
    path, _, query = target.partition("?")
    return Request(method=method, path=path, query=query, headers=headers)


def body_length(request: Request) -> int:
    if "transfer-encoding" in request.headers:
        raise HttpError(411, "chunked bodies are not accepted; send Content-Length")
    raw = request.headers.get("content-length", "0")
    if not raw.isascii() or not raw.isdigit():
        raise HttpError(400, "malformed Content-Length")
    if len(raw.lstrip("0")) > len(str(MAX_BODY)):
        raise HttpError(413, f"bodies are limited to {MAX_BODY} bytes")
    length = int(raw.lstrip("0") or "0")
    if length > MAX_BODY:
        raise HttpError(413, f"bodies are limited to {MAX_BODY} bytes")
    return length


Handler = Callable[[Request], Awaitable[Response]]


async def read_request(reader: asyncio.StreamReader, timeout: float) -> Request:
    """One request from the stream, or HttpError. The reader's limit bounds the head."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.TimeoutError as exc:
        raise HttpError(408, f"no complete request within {timeout:g} s") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, f"request heads are limited to {MAX_HEAD} bytes") from exc
    except asyncio.IncompleteReadError as exc:
        raise HttpError(400, "the connection closed before the request was complete") from exc
    request = parse_head(head[:-4])
    length = body_length(request)
    if length:
        try:
            body = await asyncio.wait_for(reader.readexactly(length), timeout)
        except asyncio.TimeoutError as exc:
            raise HttpError(408, f"the body did not arrive within {timeout:g} s") from exc
        except asyncio.IncompleteReadError as exc:
            raise HttpError(400, "the body is shorter than Content-Length") from exc
        request = Request(request.method, request.path, request.query, request.headers, body)
    return request


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    timeout: float = READ_TIMEOUT,
    on_error: Callable[[str], None] | None = None,
) -> int:
    """Answer one request and close; returns the status sent.

    Every request gets a status: 4xx for the client's faults, 500 for a failure of ours
    (its reason goes to `on_error`, the agent's log).
    """
    try:
        try:
            request = await read_request(reader, timeout)
            response = await handler(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.message)
        except Exception as exc:  # the handler's own failure: answer, log, go on
            reason = f"{type(exc).__name__}: {exc}"
            if on_error is not None:
                on_error(f"answering a request failed ({reason})")
            response = error_response(500, f"the agent failed to answer ({reason})")
        writer.write(response.encode())
        await asyncio.wait_for(writer.drain(), timeout)
        return response.status
    except (ConnectionError, asyncio.TimeoutError):
        return 0  # the client went away; nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
