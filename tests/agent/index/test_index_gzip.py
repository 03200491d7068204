"""gzip-encoded answers: the client asks for gzip only and inflates it in bounded steps, so a
page that inflates past MAX_PAGE is refused without holding much more than MAX_PAGE."""

from __future__ import annotations

import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.base.limits import MAX_PAGE
from torchenv.agent.index.client import IndexClient

PAGE = (
    b"<!DOCTYPE html><html><body>\n"
    b'<a href="demo-1.0-py3-none-any.whl#sha256=' + b"a" * 64 + b'">demo-1.0-py3-none-any.whl</a>\n'
    b"</body></html>\n"
)


def gzipped(data: bytes, repeat: int = 1) -> bytes:
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(pack.compress(data) for _ in range(repeat)) + pack.flush()


BOMB = gzipped(bytes(1 << 20), repeat=4 * (MAX_PAGE >> 20))  # 4x MAX_PAGE of zeros, ~1 MB


class _Gzip(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[dict[str, bytes]] = {}
    asked: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.asked.append(self.headers.get("Accept-Encoding", ""))
        body = self.bodies[self.path.rstrip("/").rsplit("/", 1)[-1]]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def index() -> Iterator[str]:
    _Gzip.bodies = {"demo": gzipped(PAGE), "bomb": BOMB, "damaged": gzipped(PAGE)[:-12] + b"x" * 12}
    _Gzip.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gzip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


def test_a_gzip_page_is_inflated_and_only_gzip_is_asked_for(index: str) -> None:
    with IndexClient(retries=0) as client:
        page = client.project_page(index, "demo")
    assert [a.filename for a in page] == ["demo-1.0-py3-none-any.whl"]
    assert _Gzip.asked == ["gzip"]


def test_a_page_that_inflates_past_the_bound_is_refused_in_bounded_memory(index: str) -> None:
    tracemalloc.start()
    try:
        with IndexClient(retries=0) as client, pytest.raises(IndexError_) as caught:
            client.project_page(index, "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "answered more than" in caught.value.message
    # the page's MAX_PAGE and one step more; httpx inflating a whole read at once held twice that
    assert peak < MAX_PAGE + (16 << 20), f"peak {peak >> 20} MiB"


def test_a_damaged_gzip_answer_is_an_index_error_not_a_crash(index: str) -> None:
    with IndexClient(retries=1, backoff=0.0) as client, pytest.raises(IndexError_) as caught:
        client.project_page(index, "damaged")
    assert "gzip" in caught.value.message
