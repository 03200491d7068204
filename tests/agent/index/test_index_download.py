"""A download through the index client takes the socket's bytes in large pieces, whole."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from torchenv.agent.index.client import IndexClient

BODY = bytes(range(256)) * (16 << 10)  # 4 MiB


class _Whole(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


@pytest.fixture
def wheel_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Whole)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/demo-1.0-py3-none-any.whl"
    server.shutdown()
    server.server_close()


def test_a_download_reads_more_than_64_kib_at_a_time(wheel_url: str, tmp_path: Path) -> None:
    """httpcore's own reads are 64 KiB; the client's are larger where the socket holds more
    (a pause after the first piece lets the sender fill it), and the file is the same."""
    pieces: list[int] = []

    def progress(amount: int) -> None:
        pieces.append(amount)
        if len(pieces) == 1:
            time.sleep(0.05)

    part = tmp_path / "demo.part"
    with IndexClient(retries=0) as client:
        digests, size = client.fetch_file(wheel_url, part, size=len(BODY), progress=progress)
    assert size == len(BODY) == sum(pieces)
    assert digests["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert part.read_bytes() == BODY
    assert max(pieces) > 64 << 10, f"no read took more than 64 KiB: {max(pieces)} bytes"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here (Linux has it)")
def test_a_download_onto_a_full_disk_fails_as_the_disk_does_and_stops_writing(
    wheel_url: str,
) -> None:
    """The file is written and hashed in a thread of its own: its failure is the download's
    (ENOSPC, as a write in the download's thread raised it), and that thread is gone after."""
    writers = {t for t in threading.enumerate() if t.name == "torchenv-download-write"}
    with IndexClient(retries=0) as client:
        with pytest.raises(OSError) as raised:
            client.fetch_file(wheel_url, Path("/dev/full"), size=len(BODY))
        assert raised.value.errno == errno.ENOSPC
        ok = client.fetch_file(wheel_url, Path(os.devnull), size=len(BODY))  # the client goes on
    assert ok == ({"sha256": hashlib.sha256(BODY).hexdigest()}, len(BODY))
    left = {t for t in threading.enumerate() if t.name == "torchenv-download-write"} - writers
    assert left == set()


class _CutThenBusy(BaseHTTPRequestHandler):
    """100 kB of the body, the connection cut; every later request: 503."""

    protocol_version = "HTTP/1.1"
    served = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).served += 1
        if type(self).served > 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY[:100_000])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here (Linux has it)")
def test_a_full_disk_is_said_as_itself_when_the_network_fails_after_it() -> None:
    """The write fails while the connection is cut: the download stops with ENOSPC at once,
    not with the retries' HTTP 503 the server gives afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutThenBusy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/demo-1.0-py3-none-any.whl"
    try:
        with IndexClient(retries=2, backoff=0.01) as client, pytest.raises(OSError) as raised:
            client.fetch_file(url, Path("/dev/full"), size=len(BODY))
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.errno == errno.ENOSPC
    assert _CutThenBusy.served <= 2  # no round of retries for a disk that is full
