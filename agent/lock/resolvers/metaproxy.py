"""A loopback proxy of the default index for pip: PEP 658 metadata for every wheel, no wheels."""

# pip reads a wheel's dependencies from a PEP 658 `.metadata` file when the index offers one,
# and otherwise downloads the whole wheel (its experimental `fast-deps` range reader was never
# made the default and is proposed for removal); and the pip releases in use still download
# every chosen wheel in `install --dry-run`, PEP 658 file or not (pypa/pip#12603). Mirrors and
# the PyTorch index rarely serve `.metadata` files. So pip resolves against this proxy:
#
# - `/simple/<project>/` is the upstream page (read by torchenv's index client, through its
#   HTTP cache) with each wheel linked here and marked `data-dist-info-metadata="true"`;
# - `/files/<n>/<wheel>.metadata` is that wheel's METADATA, read by the index client (the
#   index's own PEP 658 file, else three HTTP range requests on the wheel);
# - `/files/<n>/<wheel>` is a metadata-only stand-in of the wheel (nothing to install: pip
#   only reads it in a dry run), so no wheel byte is ever downloaded.
#
# The links carry no hash (the stand-ins have other bytes than the wheels): the lock takes
# every hash and URL from the upstream page, never from pip.

from __future__ import annotations

import html
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.index.model import Artifact


class MetadataProxy:
    """Serves the proxy on 127.0.0.1 while the context is open (`url` is its simple root)."""

    def __init__(self, client: IndexClient, upstream: str) -> None:
        self.client = client
        self.upstream = upstream.rstrip("/")
        self._files: list[Artifact] = []
        self._lock = threading.Lock()
        self._standins: dict[int, bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._scratch = tempfile.TemporaryDirectory(prefix="torchenv-metaproxy-")
        self.errors: list[str] = []  # upstream failures, for the resolver's error message

    # lifecycle
    def __enter__(self) -> MetadataProxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._scratch.cleanup()

    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/simple"

    # content (called from the server's threads)
    def page(self, project: str) -> bytes | None:
        artifacts = [a for a in self.client.project_page(self.upstream, project) if a.is_wheel]
        if not artifacts:
            return None
        links = []
        for artifact in artifacts:
            with self._lock:
                self._files.append(artifact)
                number = len(self._files) - 1
            attrs = [
                f'href="/files/{number}/{quote(artifact.filename)}"',
                'data-dist-info-metadata="true"',
                'data-core-metadata="true"',
            ]
            if artifact.requires_python:
                attrs.append(f'data-requires-python="{html.escape(artifact.requires_python)}"')
            if artifact.yanked is not None:
                attrs.append(f'data-yanked="{html.escape(artifact.yanked)}"')
            links.append(f"<a {' '.join(attrs)}>{html.escape(artifact.filename)}</a><br/>")
        body = "\n".join(links)
        return (
            f"<!DOCTYPE html>\n<html><body>\n<h1>Links for {html.escape(project)}</h1>\n"
            f"{body}\n</body></html>\n"
        ).encode()

    def artifact(self, number: int, filename: str) -> Artifact | None:
        with self._lock:
            if not 0 <= number < len(self._files):
                return None
            found = self._files[number]
        return found if found.filename == filename else None

    def metadata(self, artifact: Artifact) -> bytes:
        return self.client.metadata(artifact).raw.encode("utf-8")

    def standin(self, number: int, artifact: Artifact) -> bytes:
        from torchenv.agent.lock.resolvers.standin import write_standin

        with self._lock:
            cached = self._standins.get(number)
        if cached is not None:
            return cached
        directory = Path(self._scratch.name) / str(number)
        data = write_standin(directory, artifact.filename, self.metadata(artifact)).read_bytes()
        with self._lock:
            self._standins[number] = data
        return data


@contextmanager
def proxied(client: IndexClient | None, index_url: str) -> Iterator[str]:
    """The URL pip should use for `index_url`: the proxy's when a client is given."""
    if client is None:
        yield index_url
        return
    with MetadataProxy(client, index_url) as proxy:
        yield proxy.url


class _Handler(BaseHTTPRequestHandler):
    proxy: MetadataProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pip's own output says what it asked for."""

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        from torchenv.agent.base.errors import TorchenvError

        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        try:
            if len(parts) == 2 and parts[0] == "simple":
                body = self.proxy.page(canonicalize_name(parts[1]))
                self._answer(body, "text/html", head)
            elif len(parts) == 3 and parts[0] == "files" and parts[1].isdigit():
                self._file(int(parts[1]), parts[2], head)
            else:
                self._answer(None, "text/plain", head)
        except TorchenvError as exc:
            self.proxy.errors.append(exc.message)
            self._send(502, exc.message.encode(), "text/plain", head)

    def _file(self, number: int, name: str, head: bool) -> None:
        meta = name.endswith(".metadata")
        artifact = self.proxy.artifact(number, name[: -len(".metadata")] if meta else name)
        if artifact is None:
            self._answer(None, "text/plain", head)
        elif meta:
            self._answer(self.proxy.metadata(artifact), "application/octet-stream", head)
        else:
            self._answer(self.proxy.standin(number, artifact), "application/octet-stream", head)

    def _answer(self, body: bytes | None, ctype: str, head: bool) -> None:
        if body is None:
            self._send(404, b"not found\n", "text/plain", head)
        else:
            self._send(200, body, ctype, head)

    def _send(self, status: int, body: bytes, ctype: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
