"""Loopback HTTP answering gzip-encoded bodies, for the readers that inflate them in bounded
steps (the index client, the fleet's lock-source reader): what each GET asked to accept is
recorded."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def gzipped(data: bytes, repeat: int = 1) -> bytes:
    """`data` `repeat` times over, as one gzip stream (a small bomb where `repeat` is large)."""
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(pack.compress(data) for _ in range(repeat)) + pack.flush()


@dataclass
class GzipServer:
    url: str
    asked: list[str] = field(default_factory=list)  # each GET's Accept-Encoding


@contextmanager
def serve_gzip(bodies: Mapping[str, bytes], content_type: str) -> Iterator[GzipServer]:
    """Serve each body (compressed already: sent as given, gzip-encoded) at every path with
    its key as a segment (/simple/KEY/, /KEY/index.json)."""
    server_state = GzipServer("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            server_state.asked.append(self.headers.get("Accept-Encoding", ""))
            body = next(bodies[p] for p in self.path.split("/") if p in bodies)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
