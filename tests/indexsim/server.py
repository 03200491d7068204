"""A real HTTP server on loopback serving the simulated PyTorch and PyPI indexes, with knobs."""

from __future__ import annotations

import fnmatch
import hashlib
import html
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .catalog import Catalog, Hosted
from .wheels import build_sdist, build_wheel, metadata_text, sha256_file

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
LAST_MODIFIED = formatdate(1735689600, usegmt=True)  # 2025-01-01
CHUNK = 256 * 1024


@dataclass(frozen=True)
class SiteFile:
    """A file the simulator can serve, with the facts its pages advertise."""

    filename: str
    path: Path
    sha256: str
    size: int
    metadata: bytes | None  # the wheel's METADATA (served as <file>.metadata where offered)

    @property
    def metadata_sha256(self) -> str | None:
        return hashlib.sha256(self.metadata).hexdigest() if self.metadata is not None else None


@dataclass(frozen=True)
class Site:
    """The built files (on disk, once per session) plus the catalog that lists them."""

    catalog: Catalog
    files: dict[str, SiteFile]


def build_site(catalog: Catalog, directory: Path) -> Site:
    """Build every wheel and sdist of the catalog into directory (skipping ones already there)."""
    files: dict[str, SiteFile] = {}
    for spec in catalog.wheels():
        path = directory / spec.filename
        if not path.exists():
            build_wheel(spec, directory)
        files[spec.filename] = SiteFile(
            spec.filename,
            path,
            sha256_file(path),
            path.stat().st_size,
            metadata_text(spec).encode(),
        )
    for hosted in catalog.files:
        if hosted.sdist is not None and hosted.filename not in files:
            path = build_sdist(*hosted.sdist, directory)
            files[hosted.filename] = SiteFile(
                hosted.filename, path, sha256_file(path), path.stat().st_size, None
            )
    return Site(catalog, files)


@dataclass
class Fault:
    """A fault injected into the next `times` requests whose path matches (fnmatch).

    kinds: "status" (answer `status`), "reset" (TCP reset, no answer), "truncate" (announce
    the full length, send half, drop the connection), "short" (send half with a
    Content-Length that matches: a consistent but wrong body), "endless" (no Content-Length,
    then bytes until the client hangs up: a body that never ends).
    """

    kind: str
    path: str = "*"
    times: int = 1  # -1: every request
    status: int = 500


@dataclass
class Knobs:
    """Per-server behaviour; change it between requests (tests) or at start (benchmarks)."""

    ranges: bool = True  # honour Range headers (False: answer 200 with the whole file)
    pep658: bool = True  # serve and advertise .metadata files where the catalog has them
    json_api: bool = True  # answer PEP 691 JSON on /simple when the client asks for it
    latency: float = 0.0  # seconds slept before every answer
    page_cache_control: str | None = None  # Cache-Control on project pages
    file_cache_control: str | None = "max-age=365000000, immutable"
    wrong_hash: set[str] = field(default_factory=set)  # filenames (or x.metadata) advertised wrong
    faults: list[Fault] = field(default_factory=list)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int
    bytes_sent: int
    range: str | None
    conditional: bool
    accept: str | None
    user_agent: str | None = None
    arrived: float = 0.0  # time.monotonic() when the request was read, before any latency
    answered: float = 0.0  # time.monotonic() when its answer was written

    def overlaps(self, other: RequestRecord) -> bool:
        """Were both requests in flight at once (the client sent one before the other's answer)?"""
        return self.arrived < other.answered and other.arrived < self.answered


class IndexSim:
    """The simulator: `with IndexSim(site) as sim:` serves http://127.0.0.1:<port>/.

    One server serves both indexes: `torch_index_url` (…/whl, PEP 503 HTML only) and
    `pypi_url` (…/simple, HTML or JSON). Start two servers for different knobs per index.
    """

    def __init__(self, site: Site, knobs: Knobs | None = None) -> None:
        self.site = site
        self.knobs = knobs or Knobs()
        self._lock = threading.Condition()
        self._log: list[RequestRecord] = []
        self._in_flight = 0
        self.max_in_flight = 0  # the most requests handled at once (shows client concurrency)
        self._pages = _page_table(site.catalog)
        self._paths = _file_table(site.catalog)
        self.page_dirs = frozenset(d for d, _ in self._pages)
        self.mounts: dict[str, Path] = {}  # URL path prefix -> directory served as static files
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> IndexSim:
        handler = type("Handler", (_Handler,), {"sim": self})
        server = _Server(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> IndexSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # addresses
    @property
    def url(self) -> str:
        assert self._server is not None, "the simulator is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def torch_index_url(self) -> str:
        return self.url + "/whl"

    @property
    def pypi_url(self) -> str:
        return self.url + "/simple"

    def file_url(self, filename: str, index: str = "pypi", variant: str = "") -> str:
        for hosted in self.site.catalog.find(filename):
            if hosted.index == index and (not variant or hosted.variant == variant):
                return f"{self.url}/{hosted.directory}/{quote(filename)}"
        raise KeyError(filename)

    def serve_directory(self, name: str, directory: Path) -> str:
        """Serve the files under `directory` at /<name>/ (ETag, 304s, counted like the rest):
        a published lock directory, say. Returns its URL."""
        self.mounts[name.strip("/")] = directory
        return f"{self.url}/{name.strip('/')}/"

    def mounted_file(self, path: str) -> bytes | None:
        """The bytes of a served directory's file at this URL path (None: not one)."""
        first, _, rest = path.lstrip("/").partition("/")
        root = self.mounts.get(first)
        if root is None or not rest or rest.endswith("/") or ".." in rest.split("/"):
            return None
        try:
            return (root / rest).read_bytes()
        except OSError:
            return None

    # faults
    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.knobs.faults.append(fault)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.knobs.faults:
                if fault.times != 0 and fnmatch.fnmatchcase(path, fault.path):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    # counters
    def requests(self, pattern: str = "*") -> list[RequestRecord]:
        """Requests so far; waits (briefly) for answers still being recorded."""
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=5)
            return [r for r in self._log if fnmatch.fnmatchcase(r.path, pattern)]

    def count(self, pattern: str = "*", status: int | None = None) -> int:
        return sum(1 for r in self.requests(pattern) if status is None or r.status == status)

    def bytes_sent(self, pattern: str = "*") -> int:
        return sum(r.bytes_sent for r in self.requests(pattern))

    def round_trips(self, pattern: str = "*") -> int:
        """How many waves the requests came in: a request that arrived after every earlier
        one was answered starts a new wave (so N requests sent at once are one round trip,
        N sent one after another are N)."""
        waves, answered = 0, float("-inf")
        for rec in sorted(self.requests(pattern), key=lambda r: r.arrived):
            if rec.arrived >= answered:
                waves += 1
                answered = rec.answered
            else:
                answered = max(answered, rec.answered)
        return waves

    def reset_counters(self) -> None:
        """Forget the requests so far (waiting, briefly, for those still being recorded: an
        answer the client has read may be logged a moment later)."""
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=5)
            self._log.clear()
            self.max_in_flight = 0

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self, rec: RequestRecord) -> None:
        with self._lock:
            self._log.append(rec)
            self._in_flight -= 1
            self._lock.notify_all()

    # content
    def page(self, page_dir: str, project: str, as_json: bool) -> bytes | None:
        listed = self._pages.get((page_dir, project))
        if listed is None:
            return None
        if as_json:
            return _json_page(self, project, listed)
        return _html_page(self, project, listed)

    def root_page(self, page_dir: str) -> bytes | None:
        projects = sorted(p for d, p in self._pages if d == page_dir)
        if not projects:
            return None
        links = "".join(f'<a href="{p}/">{p}</a><br/>\n' for p in projects)
        return f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()

    def resolve_file(self, path: str) -> tuple[SiteFile, bool] | None:
        """(file, is_metadata) for a URL path, honouring the pep658 knob."""
        if path.endswith(".metadata"):
            hosted = self._paths.get(path[: -len(".metadata")])
            if hosted is None or not (hosted.pep658 and self.knobs.pep658):
                return None
            return self.site.files[hosted.filename], True
        hosted = self._paths.get(path)
        return (self.site.files[hosted.filename], False) if hosted else None

    def advertised_hash(self, name: str, real: str) -> str:
        if name in self.knobs.wrong_hash:
            return hashlib.sha256(b"wrong:" + real.encode()).hexdigest()
        return real


def _page_table(catalog: Catalog) -> dict[tuple[str, str], list[Hosted]]:
    table: dict[tuple[str, str], list[Hosted]] = {}
    for hosted in catalog.files:
        table.setdefault((hosted.page_dir, hosted.project), []).append(hosted)
    return table


def _file_table(catalog: Catalog) -> dict[str, Hosted]:
    return {f"/{h.directory}/{h.filename}": h for h in catalog.files}


def _html_page(sim: IndexSim, project: str, listed: list[Hosted]) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta name="pypi:repository-version" content="1.1">',
        f"    <title>Links for {project}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {project}</h1>",
    ]
    for hosted in listed:
        lines.append("    " + _html_link(sim, hosted) + "<br/>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def _html_link(sim: IndexSim, hosted: Hosted) -> str:
    f = sim.site.files[hosted.filename]
    nightly = hosted.channel == "nightly"
    if hosted.index == "pypi":  # relative, as some mirrors serve them
        href = f"../../packages/{hosted.project}/{quote(f.filename)}"
    else:
        href = f"/{hosted.directory}/{quote(f.filename)}"
    if not nightly:
        href += "#sha256=" + sim.advertised_hash(f.filename, f.sha256)
    attrs = [f'href="{html.escape(href)}"']
    if hosted.index == "pypi" and hosted.wheel is not None and hosted.wheel.requires_python:
        attrs.append(f'data-requires-python="{html.escape(hosted.wheel.requires_python)}"')
    meta_hash = f.metadata_sha256
    if hosted.pep658 and sim.knobs.pep658 and meta_hash is not None:
        value = "sha256=" + sim.advertised_hash(f.filename + ".metadata", meta_hash)
        attrs.append(f'data-dist-info-metadata="{value}"')
        if hosted.core_metadata_attr:
            attrs.append(f'data-core-metadata="{value}"')
    if hosted.yanked is not None:
        attrs.append(f'data-yanked="{html.escape(hosted.yanked)}"')
    return f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a>"


def _json_page(sim: IndexSim, project: str, listed: list[Hosted]) -> bytes:
    files: list[dict[str, Any]] = []
    for hosted in listed:
        f = sim.site.files[hosted.filename]
        entry: dict[str, Any] = {
            "filename": f.filename,
            "url": f"{sim.url}/{hosted.directory}/{quote(f.filename)}",
            "hashes": {"sha256": sim.advertised_hash(f.filename, f.sha256)},
            "requires-python": hosted.wheel.requires_python if hosted.wheel else None,
            "size": f.size,
            "upload-time": "2025-01-01T00:00:00.000000Z",
            "yanked": hosted.yanked if hosted.yanked is not None else False,
        }
        meta_hash = f.metadata_sha256
        if hosted.pep658 and sim.knobs.pep658 and meta_hash is not None:
            adv = {"sha256": sim.advertised_hash(f.filename + ".metadata", meta_hash)}
            entry["core-metadata"] = adv
            entry["dist-info-metadata"] = adv
        files.append(entry)
    doc = {"meta": {"api-version": "1.1"}, "name": project, "files": files, "versions": []}
    return json.dumps(doc, indent=1).encode()


def _wants_json(accept: str | None) -> bool:
    if not accept:
        return False
    best_json, best_html = -1.0, -1.0
    for part in accept.split(","):
        kind, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                q = float(value or 1)
        if kind.strip() == JSON_TYPE:
            best_json = max(best_json, q)
        elif kind.strip() in ("text/html", "application/vnd.pypi.simple.v1+html", "*/*"):
            best_html = max(best_html, q)
    return best_json > 0 and best_json >= best_html


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single `bytes=` range, or None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first_s, _, last_s = spec.strip().partition("-")
    if not first_s:
        n = int(last_s)
        return (max(0, size - n), size - 1) if n > 0 and size else None
    first = int(first_s)
    last = min(int(last_s), size - 1) if last_s else size - 1
    return (first, last) if first <= last else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (timeouts, resets under test) is normal here."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    sim: IndexSim
    protocol_version = "HTTP/1.1"
    server_version = "indexsim/1"
    # as real servers (nginx: tcp_nodelay on): headers then body, each sent at once; with
    # Nagle each keep-alive answer waits ~40 ms for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the counters instead."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        sim = self.sim
        path = unquote(urlsplit(self.path).path)
        arrived = time.monotonic()
        sim._enter()
        if sim.knobs.latency:
            time.sleep(sim.knobs.latency)
        self._sent = 0
        self._status = 0
        try:
            fault = sim._take_fault(path)
            if fault is not None and fault.kind in ("status", "reset", "endless"):
                self._fault(fault)
            else:
                self._route(path, head, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            sim._leave(
                RequestRecord(
                    self.command,
                    path,
                    self._status,
                    self._sent,
                    self.headers.get("Range"),
                    bool(
                        self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since")
                    ),
                    self.headers.get("Accept"),
                    self.headers.get("User-Agent"),
                    arrived,
                    time.monotonic(),
                )
            )

    def _fault(self, fault: Fault) -> None:
        if fault.kind == "status":
            self._simple(fault.status, b"injected fault\n")
        elif fault.kind == "endless":
            self._endless()
        else:
            self._reset()

    def _endless(self, cap: int = 4 << 30) -> None:
        """200 with a close-delimited body that goes on until the client stops reading."""
        self._status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        block = b"<a href='x'>x</a>\n" * (CHUNK // 18)
        while self._sent < cap:  # a bound for the test's own sake
            self._write(block)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        self._status = -1

    def _hang_up(self) -> None:
        """Close our side cleanly (FIN) in the middle of a body."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True

    def _route(self, path: str, head: bool, fault: Fault | None) -> None:
        sim = self.sim
        if path.lstrip("/").partition("/")[0] in sim.mounts:
            mounted = sim.mounted_file(path)
            if mounted is None:
                self._simple(404, b"not found\n")
            else:
                kind = "application/json" if path.endswith(".json") else "application/toml"
                self._page(mounted, kind, head, fault)
            return
        if path.endswith("/"):
            parts = path.strip("/").split("/")
            body, ctype = None, "text/html"
            if parts and parts[0] in ("whl", "simple"):
                if "/".join(parts) not in sim.page_dirs:
                    page_dir, project = "/".join(parts[:-1]), parts[-1]
                    as_json = (
                        page_dir == "simple"
                        and sim.knobs.json_api
                        and _wants_json(self.headers.get("Accept"))
                    )
                    normal = _normalize(project)
                    body = sim.page(page_dir, normal, as_json)
                    ctype = JSON_TYPE if as_json else "text/html"
                else:
                    body = sim.root_page("/".join(parts))
            if body is None:
                self._simple(404, b"not found\n")
                return
            self._page(body, ctype, head, fault)
            return
        found = sim.resolve_file(path)
        if found is None:
            self._simple(404, b"not found\n")
            return
        site_file, is_metadata = found
        if is_metadata:
            assert site_file.metadata is not None
            self._page(site_file.metadata, "application/octet-stream", head, fault, pages=False)
        else:
            self._file(site_file, head, fault)

    def _simple(self, status: int, body: bytes) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write(body)

    def _validators_match(self, etag: str) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            return etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
        ims = self.headers.get("If-Modified-Since")
        if ims is not None:
            try:
                return parsedate_to_datetime(ims) >= parsedate_to_datetime(LAST_MODIFIED)
            except (TypeError, ValueError):
                return False
        return False

    def _page(
        self, body: bytes, ctype: str, head: bool, fault: Fault | None, *, pages: bool = True
    ) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cache_control = (
            self.sim.knobs.page_cache_control if pages else self.sim.knobs.file_cache_control
        )
        if self._validators_match(etag):
            self._status = 304
            self.send_response(304)
            self.send_header("ETag", etag)
            if cache_control:
                self.send_header("Cache-Control", cache_control)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._status = 200
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Vary", "Accept")
        if cache_control:
            self.send_header("Cache-Control", cache_control)
        self._body(body, head, fault)

    def _body(self, body: bytes, head: bool, fault: Fault | None) -> None:
        if fault is not None and fault.kind == "short":
            body = body[: len(body) // 2]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if fault is not None and fault.kind == "truncate":
            self._write(body[: len(body) // 2])
            self._hang_up()
            return
        self._write(body)

    def _file(self, f: SiteFile, head: bool, fault: Fault | None) -> None:
        knobs = self.sim.knobs
        first, last = 0, f.size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and knobs.ranges:
            parsed = _parse_range(range_header, f.size)
            if parsed is None:
                self._status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            first, last = parsed
            status = 206
        length = last - first + 1
        if fault is not None and fault.kind == "short":
            length //= 2
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"' + f.sha256[:32] + '"')
        self.send_header("Last-Modified", LAST_MODIFIED)
        if knobs.file_cache_control:
            self.send_header("Cache-Control", knobs.file_cache_control)
        if knobs.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{f.size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        to_send = length // 2 if fault is not None and fault.kind == "truncate" else length
        for chunk in _read_chunks(f.path, first, to_send):
            self._write(chunk)
        if to_send < length:
            self._hang_up()

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self._sent += len(data)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_chunks(path: Path, offset: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
