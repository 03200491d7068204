"""Find the machine's real wheels through pip's configuration and serve them as a plain mirror."""

from __future__ import annotations

import fnmatch
import hashlib
import html
import re
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import Parser
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from torchenv.agent.base.indexconfig import read_pip_config

FAMILY = ("torch", "torchvision", "torchaudio")
DECOY_PROJECTS = ("numpy", "fsspec")  # their two oldest real versions: on the PyTorch side only
BUILT_DECOYS = (("jinja2", "3.1.4"),)  # test-built copies at other versions (no real file)
DECOY_SUMMARY = "Decoy copy on the mirror's PyTorch side, built by torchenv's tests; never install"
STANDIN_SUMMARY = (
    "Stand-in built by torchenv's tests for a wheel this machine lacks; not the real {name}"
)
LAST_MODIFIED = formatdate(1767225600, usegmt=True)  # 2026-01-01
CHUNK = 1 << 20
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256, per process


@dataclass(frozen=True)
class RealWheel:
    """One wheel file on this machine, as pip's configuration lists it."""

    filename: str
    path: Path
    sha256: str
    project: str  # normalised
    version: Version

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def metadata(self) -> dict[str, Any]:
        """Name, Version, Requires-Dist of the wheel's METADATA (read from the zip)."""
        with zipfile.ZipFile(self.path) as archive:
            name = next(
                n
                for n in archive.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            )
            text = archive.read(name).decode("utf-8", "replace")
        headers = Parser().parsestr(text, headersonly=True)
        return {
            "version": headers["Version"],
            "requires_dist": tuple(headers.get_all("Requires-Dist") or ()),
        }

    def requirements(self) -> list[Requirement]:
        out = []
        for text in self.metadata()["requires_dist"]:
            try:
                out.append(Requirement(text))
            except InvalidRequirement:
                continue
        return out


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _wheel(path: Path, sha256: str | None) -> RealWheel | None:
    try:
        project, version, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename:
        return None
    if not path.is_file():
        return None
    return RealWheel(path.name, path, sha256 or _sha256(path), project, version)


def _index_wheels(root: Path) -> Iterator[RealWheel]:
    """The wheels a file:// PEP 503 index lists, with the hashes its links carry."""
    for page in sorted(root.glob("*/index.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        for href in re.findall(r'href="([^"]+)"', text):
            target, _, fragment = html.unescape(href).partition("#")
            if not target.endswith(".whl"):
                continue
            algo, _, digest = fragment.partition("=")
            path = (page.parent / unquote(target)).resolve()
            found = _wheel(path, digest.lower() if algo == "sha256" and digest else None)
            if found is not None:
                yield found


def wheel_sources() -> list[tuple[str, Path]]:
    """("find-links" | "index", directory) for each local source in pip's configuration."""
    config = read_pip_config()
    out: list[tuple[str, Path]] = []
    for link in config.find_links:
        if link.startswith("file://"):
            out.append(("find-links", Path(unquote(urlsplit(link).path))))
        elif "://" not in link:
            out.append(("find-links", Path(link)))
    for url in (config.index_url, *config.extra_index_urls):
        if url and url.startswith("file://"):
            out.append(("index", Path(unquote(urlsplit(url).path))))
    return out


def find_real_wheels() -> dict[str, RealWheel]:
    """Every wheel the machine's pip configuration finds locally, by file name (first wins)."""
    found: dict[str, RealWheel] = {}
    for kind, directory in wheel_sources():
        if not directory.is_dir():
            continue
        wheels: Iterable[RealWheel | None]
        if kind == "find-links":
            wheels = (_wheel(p, None) for p in sorted(directory.glob("*.whl")))
        else:
            wheels = _index_wheels(directory)
        for wheel in wheels:
            if wheel is not None:
                found.setdefault(wheel.filename, wheel)
    return found


# ---------------------------------------------------------------- where each file goes


def torch_variant(wheel: RealWheel) -> str | None:
    """The PyTorch index directory a real torch wheel belongs in: its label, else the CUDA its
    METADATA requires (PyPI's unlabelled Linux wheel is a CUDA build)."""
    local = wheel.version.local
    if local:
        return local if re.fullmatch(r"cpu|cu\d{3}|rocm\d+(\.\d+)+|xpu", local) else None
    for req in wheel.requirements():
        name = canonicalize_name(req.name)
        pins = [s.version for s in req.specifier if s.operator in ("==", "===", "~=", ">=")]
        if not pins:
            continue
        parts = pins[0].split(".")
        if name == "cuda-toolkit" or name.startswith("nvidia-cuda-runtime"):
            return f"cu{parts[0]}{parts[1]}" if len(parts) > 1 else None
    return None


def _torch_minor(wheel: RealWheel) -> str | None:
    """The torch release (X.Y) an unlabelled family wheel was built against, from its pin."""
    for req in wheel.requirements():
        if canonicalize_name(req.name) == "torch":
            for spec in req.specifier:
                if spec.operator in ("==", ">=", "~="):
                    return ".".join(spec.version.split("+")[0].split(".")[:2])
    return None


@dataclass(frozen=True)
class MirrorFiles:
    """Which file is listed where: the PyTorch side per variant, and the default side."""

    torch: Mapping[str, tuple[RealWheel, ...]]  # variant -> family wheels and decoys
    default: tuple[RealWheel, ...]
    decoys: tuple[RealWheel, ...]
    standins: tuple[RealWheel, ...]

    def builds(self, variant: str) -> list[RealWheel]:
        return [w for w in self.torch.get(variant, ()) if w.project == "torch"]

    def has(self, variant: str) -> bool:
        return bool(self.builds(variant))

    def skip_reason(self, variant: str) -> str | None:
        if self.has(variant):
            return None
        return (
            f"pip's configuration offers no real torch wheel for {variant} "
            f"(variants found: {', '.join(sorted(v for v in self.torch if self.has(v))) or 'none'})"
        )

    @property
    def all_files(self) -> dict[str, RealWheel]:
        out = {w.filename: w for w in self.default}
        for wheels in self.torch.values():
            out.update({w.filename: w for w in wheels})
        return out


def find_mirror_files(work_dir: Path) -> MirrorFiles | str:
    """The mirror's layout from the machine's wheels, or why there is none."""
    wheels = find_real_wheels()
    if not wheels:
        return "pip's configuration points at no local wheels (find-links or file:// indexes)"
    torches: dict[str, list[RealWheel]] = {}
    unlabelled: dict[str, str] = {}  # torch X.Y of an unlabelled build -> its variant
    for wheel in wheels.values():
        if wheel.project == "torch":
            variant = torch_variant(wheel)
            if variant is not None:
                torches.setdefault(variant, []).append(wheel)
                if not wheel.version.local:
                    minor = ".".join(str(p) for p in wheel.version.release[:2])
                    unlabelled[minor] = variant
    if not torches:
        return "pip's configuration offers no real torch wheel"
    side: dict[str, list[RealWheel]] = {v: list(ws) for v, ws in torches.items()}
    for wheel in wheels.values():
        if wheel.project in FAMILY and wheel.project != "torch":
            local = wheel.version.local
            variant = local if local in side else unlabelled.get(_torch_minor(wheel) or "")
            if variant is not None and not (local and local != variant):
                side[variant].append(wheel)
    decoys = _decoys(wheels, work_dir)
    on_torch_side = {w.filename for ws in side.values() for w in ws if w.version.local}
    decoy_names = {d.filename for d in decoys}
    default = [
        w for n, w in sorted(wheels.items()) if n not in decoy_names and n not in on_torch_side
    ]
    standins = _standins(default, [w for ws in torches.values() for w in ws], work_dir)
    return MirrorFiles(
        torch={v: tuple(ws + decoys) for v, ws in side.items()},
        default=tuple(default + standins),
        decoys=tuple(decoys),
        standins=tuple(standins),
    )


def _decoys(wheels: Mapping[str, RealWheel], work_dir: Path) -> list[RealWheel]:
    """Old real versions of DECOY_PROJECTS (taken off the default side) and built copies."""
    out: list[RealWheel] = []
    for project in DECOY_PROJECTS:
        versions = sorted({w.version for w in wheels.values() if w.project == project})
        older = set(versions[:-1][:2])  # never the newest: the default side keeps one
        out += [w for w in wheels.values() if w.project == project and w.version in older]
    for project, version in BUILT_DECOYS:
        module = project.replace("-", "_")
        body = f'raise ImportError("{project} {version} here is a decoy from the test mirror")\n'
        out.append(
            _built(
                work_dir / "decoys",
                project,
                version,
                DECOY_SUMMARY,
                {f"{module}/__init__.py": body},
            )
        )
    return out


def _standins(
    default: list[RealWheel], torches: list[RealWheel], work_dir: Path
) -> list[RealWheel]:
    """Stand-ins for what a real torch requires on Linux and no local index has."""
    have = {w.project for w in default}
    env = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64"}
    out: list[RealWheel] = []
    for torch in torches:
        for req in torch.requirements():
            name = canonicalize_name(req.name)
            if name in have or (req.marker is not None and not _holds(req, env)):
                continue
            floor = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
            version = floor[0] if floor else "0.0.1"
            summary = STANDIN_SUMMARY.format(name=name)
            module = name.replace("-", "_")
            out.append(
                _built(
                    work_dir / "standins",
                    name,
                    version,
                    summary,
                    {f"{module}/__init__.py": f'"""{summary}."""\n'},
                )
            )
            have.add(name)
    return out


def _holds(req: Requirement, env: Mapping[str, str]) -> bool:
    assert req.marker is not None
    return req.marker.evaluate({**env, "python_version": "3.11", "extra": ""})


def _built(
    directory: Path, name: str, version: str, summary: str, files: Mapping[str, str]
) -> RealWheel:
    from indexsim.wheels import WheelSpec, build_wheel

    spec = WheelSpec(name, version, "py3-none-any", summary=summary, files=dict(files))
    path = directory / spec.filename
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        build_wheel(spec, directory)
    found = _wheel(path, None)
    assert found is not None
    return found


# ---------------------------------------------------------------- the server


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    status: int
    bytes_sent: int
    range: str | None


@dataclass
class Knobs:
    latency: float = 0.0  # seconds slept before every answer (benchmarks)


@dataclass
class _Tables:
    pages: dict[str, bytes] = field(default_factory=dict)  # URL path -> HTML
    files: dict[str, RealWheel] = field(default_factory=dict)  # URL path -> file


def _page(project: str, links: list[tuple[str, RealWheel]]) -> bytes:
    rows = "".join(
        f'<a href="{html.escape(href)}#sha256={w.sha256}">{html.escape(w.filename)}</a><br/>\n'
        for href, w in sorted(links, key=lambda item: item[1].filename)
    )
    return (
        f"<!DOCTYPE html>\n<html><head><title>Links for {project}</title></head><body>\n"
        f"<h1>Links for {project}</h1>\n{rows}</body></html>\n"
    ).encode()


def _root(projects: Iterable[str]) -> bytes:
    rows = "".join(f'<a href="{p}/">{p}</a><br/>\n' for p in sorted(projects))
    return f"<!DOCTYPE html>\n<html><body>\n{rows}</body></html>\n".encode()


def _tables(files: MirrorFiles) -> _Tables:
    tables = _Tables()
    sides: list[tuple[str, str, Iterable[RealWheel]]] = [
        (f"/whl/{variant}", f"/whl/{variant}", wheels) for variant, wheels in files.torch.items()
    ]
    sides.append(("/simple", "/packages", files.default))
    for page_root, file_root, wheels in sides:
        by_project: dict[str, list[tuple[str, RealWheel]]] = {}
        for wheel in wheels:
            path = f"{file_root}/{wheel.filename}"
            tables.files[path] = wheel
            # the PyTorch side links by absolute path, the default side relatively (as devpi)
            href = (
                f"{file_root}/{quote(wheel.filename)}"
                if page_root.startswith("/whl")
                else f"../../packages/{quote(wheel.filename)}"
            )
            by_project.setdefault(wheel.project, []).append((href, wheel))
        for project, links in by_project.items():
            tables.pages[f"{page_root}/{project}/"] = _page(project, links)
        tables.pages[f"{page_root}/"] = _root(by_project)
    return tables


class RealMirror:
    """`with RealMirror(files) as mirror:` serves http://127.0.0.1:<port>/{whl,simple}/."""

    def __init__(self, files: MirrorFiles, knobs: Knobs | None = None) -> None:
        self.files = files
        self.knobs = knobs or Knobs()
        self.tables = _tables(files)
        self._lock = threading.Condition()
        self._log: list[Served] = []
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> RealMirror:
        handler = type("Handler", (_Handler,), {"mirror": self})
        server = _Server(("127.0.0.1", 0), handler)
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RealMirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the mirror is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def torch_index_url(self) -> str:
        return self.url + "/whl"

    @property
    def index_url(self) -> str:
        return self.url + "/simple"

    # counters
    def requests(self, pattern: str = "*") -> list[Served]:
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=5)
            return [r for r in self._log if fnmatch.fnmatchcase(r.path, pattern)]

    def bytes_sent(self, pattern: str = "*") -> int:
        return sum(r.bytes_sent for r in self.requests(pattern))

    def reset_counters(self) -> None:
        with self._lock:
            self._log.clear()

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _leave(self, record: Served) -> None:
        with self._lock:
            self._log.append(record)
            self._in_flight -= 1
            self._lock.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that hangs up is normal
        super().handle_error(request, client_address)


def _range(header: str, size: int) -> tuple[int, int] | None:
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 and size else None
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if start <= end else None


class _Handler(BaseHTTPRequestHandler):
    mirror: RealMirror
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    # as real servers (nginx: tcp_nodelay on): headers then body, each sent at once; with
    # Nagle each keep-alive answer waits ~40 ms for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the counters."""

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        mirror = self.mirror
        path = unquote(urlsplit(self.path).path)
        mirror._enter()
        self._sent, self._status = 0, 0
        if mirror.knobs.latency:
            time.sleep(mirror.knobs.latency)
        try:
            if path in mirror.tables.pages:
                self._page(mirror.tables.pages[path], head)
            elif path in mirror.tables.files:
                self._file(mirror.tables.files[path], head)
            elif not path.endswith("/") and path + "/" in mirror.tables.pages:
                self._redirect(path + "/")
            else:
                self._answer(404, b"<html><body>404 Not Found</body></html>\n", "text/html", head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            mirror._leave(
                Served(self.command, path, self._status, self._sent, self.headers.get("Range"))
            )

    def _answer(self, status: int, body: bytes, ctype: str, head: bool) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self._write(body)

    def _redirect(self, location: str) -> None:
        self._status = 301
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _page(self, body: bytes, head: bool) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self._not_modified(etag):
            self._status = 304
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self._write(body)

    def _not_modified(self, etag: str) -> bool:
        given = self.headers.get("If-None-Match")
        if given is not None:
            return etag in [t.strip() for t in given.split(",")]
        since = self.headers.get("If-Modified-Since")
        if since is not None:
            try:
                return parsedate_to_datetime(since) >= parsedate_to_datetime(LAST_MODIFIED)
            except (TypeError, ValueError):
                return False
        return False

    def _file(self, wheel: RealWheel, head: bool) -> None:
        size = wheel.size
        first, last, status = 0, size - 1, 200
        asked = self.headers.get("Range")
        if asked:
            parsed = _range(asked, size)
            if parsed is None:
                self._status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            (first, last), status = parsed, 206
        length = last - first + 1
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"' + wheel.sha256[:16] + '"')
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        with wheel.path.open("rb") as fh:
            fh.seek(first)
            left = length
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    break
                self._write(chunk)
                left -= len(chunk)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self._sent += len(data)
