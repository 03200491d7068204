"""Property-based fuzzing of what torchenv reads from others: lock documents, requirement
strings and files, recorded hosts, and the agent's requests.

Every property is the same promise: bad input ends in a TorchenvError (exit 1 with a
paragraph at the CLI) or an HTTP status, never another exception (exit 3, a traceback);
nothing is written outside torchenv's own directories; memory stays bounded. In process, so
that the suite runs in well under a minute in CI (profile `ci`, the default; set
HYPOTHESIS_PROFILE=deep for a longer search).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import tomli_w
from helpers.faults import HOST, Tree, real_lock
from helpers.harness import Harness, status_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from torchenv.agent.base.errors import TorchenvError, UnexpectedError
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.cli.reqfiles import read_requirements_file
from torchenv.agent.env import fetch, sync
from torchenv.agent.host.source import load_host
from torchenv.agent.lock.inputs import parse_requirements
from torchenv.agent.lock.pylock import parse_pylock

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("deep", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MEMORY = 64 << 20  # bytes any one example may hold at its peak


def bounded(fn: Callable[[], Any]) -> Any:
    """fn() under tracemalloc: its TorchenvError is returned, its peak memory checked."""
    tracemalloc.start()
    try:
        return fn()
    except TorchenvError as exc:
        assert not isinstance(exc, UnexpectedError), exc
        return exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY, peak


# -- pylock.toml documents --------------------------------------------------------------------
# A valid two-package lock of real (test-built) wheels, with up to three fields replaced by
# hostile or malformed values: most examples get past the reader and reach the downloads.

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
HOSTILE = {
    "name": st.sampled_from([
        "../../../../outside/filelock-1.0-py3-none-any.whl",
        "/tmp/outside/filelock-1.0-py3-none-any.whl", "..", "", "a/b-1.0-py3-none-any.whl",
        "a\\b-1.0-py3-none-any.whl", "x\x00-1.0-py3-none-any.whl", "not a wheel",
        "x" * 300 + "-1.0-py3-none-any.whl", "filelock-1.0-py3-none-any.whl",
    ]) | st.text(max_size=30),
    "url": st.sampled_from([
        "", "wheels/x.whl", "file:///dev/zero", "file:///", "file://host/x.whl",
        "file:///nonexistent/x.whl", "ftp://x/y.whl", "http://", "https:///x",
        "file:///etc/hostname", "javascript:alert(1)", "file:///proc/self/mem",
    ]) | st.text(max_size=40),
    "size": st.integers(-5, 1 << 20) | st.just(10**12) | SCALARS,
    "sha256": st.text("0123456789abcdef", min_size=64, max_size=64) | st.text(max_size=70),
    "python": st.floats(2, 4) | st.text(max_size=6) | SCALARS,
    "version": SCALARS,
    "wheels": JSON,
    "packages": JSON,
    "lock-version": SCALARS,
}  # fmt: skip


@pytest.fixture(scope="module")
def base_lock(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = real_lock(tmp_path_factory.mktemp("fuzzbase"))
    return cast(dict[str, Any], tomllib.loads(path.read_text()))


def _mutated(base: dict[str, Any], changes: list[tuple[str, int, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for key, which, value in changes:
        packages = doc.get("packages")
        package = packages[which % len(packages)] if isinstance(packages, list) and packages else {}
        wheels = package.get("wheels") if isinstance(package, dict) else None
        wheel = wheels[0] if isinstance(wheels, list) and wheels else {}
        if key in ("name", "url", "size") and isinstance(wheel, dict):
            wheel[key] = value
        elif key == "sha256" and isinstance(wheel, dict):
            wheel["hashes"] = {"sha256": value}
        elif key in ("version", "wheels") and isinstance(package, dict):
            package[key] = value
        elif key == "python":
            doc["tool"]["torchenv"]["python"] = value
        else:
            doc[key] = value
    return doc


CHANGES = st.lists(
    st.sampled_from(sorted(HOSTILE)).flatmap(
        lambda key: st.tuples(st.just(key), st.integers(0, 1), HOSTILE[key])
    ),
    max_size=3,
)


def _toml(doc: dict[str, Any]) -> bytes:
    try:
        return tomli_w.dumps(_droppable(doc)).encode()
    except (TypeError, ValueError):
        return repr(doc).encode()  # not TOML at all: the reader must say so


def _droppable(value: Any) -> Any:
    """TOML has no null: drop None values (the document then lacks the key)."""
    if isinstance(value, dict):
        return {k: _droppable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_droppable(v) for v in value if v is not None]
    return value


@given(changes=CHANGES, cut=st.integers(0, 4000))
def test_any_lock_document_is_installed_or_refused_and_writes_only_the_cache(
    tmp_path_factory: pytest.TempPathFactory,
    base_lock: dict[str, Any],
    changes: list[tuple[str, int, Any]],
    cut: int,
) -> None:
    root = tmp_path_factory.mktemp("lockfuzz")
    cache = root / "cache"
    before = Tree.of(root)
    raw = _toml(_mutated(base_lock, changes))
    for document in (raw, raw[:cut]):

        def install(document: bytes = document) -> None:
            lock = parse_pylock(document)
            sync.check_lock(lock, cache, HOST.target_facts(), force=True, reporter=Reporter())
            fetch.fetch_all(lock.packages, cache, Reporter())

        bounded(install)
    assert [p for p in before.added() if not p.startswith("cache")] == []
    assert not Path("/tmp/outside").exists()


# -- requirement strings and files ------------------------------------------------------------

REQUIREMENT_PIECES = st.sampled_from(
    ["torch", "torch>=2.6", "torch; sys_platform == 'win32'", "numpy[", "-r x", "--index-url",
     "torch @ file:///x", "# comment", "name==", "a;b", "\x00", "é", "\ufeff", "torch ===1"]
)  # fmt: skip


@given(lines=st.lists(st.one_of(REQUIREMENT_PIECES, st.text(max_size=40)), max_size=6))
def test_any_requirement_text_is_parsed_or_refused(lines: list[str]) -> None:
    result = bounded(lambda: parse_requirements(lines))
    assert isinstance(result, (tuple, TorchenvError))


@given(data=st.binary(max_size=2048))
def test_any_requirements_file_is_read_or_refused(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("reqfuzz") / "requirements.txt"
    path.write_bytes(data)
    result = bounded(lambda: parse_requirements(read_requirements_file(path)))
    assert isinstance(result, (tuple, TorchenvError))


# -- recorded hosts ---------------------------------------------------------------------------

HOST_PATHS = st.sampled_from(
    ["/sys/module/nvidia/version", "/proc/driver/nvidia/version", "/etc/os-release",
     "/proc/cpuinfo", "/sys/class/kfd/kfd/topology/nodes", "/../../../../etc/passwd",
     "/sys/bus/pci/devices", "/opt/rocm/.info/version", "/proc/meminfo"]
)  # fmt: skip


@given(
    manifest=st.one_of(
        JSON,
        st.fixed_dictionaries({"listings": st.dictionaries(HOST_PATHS, JSON, max_size=3),
                               "missing": JSON, "errors": JSON, "exists": JSON}),
    ),
    commands=JSON,
    env=JSON,
    facts=st.one_of(JSON, st.dictionaries(st.sampled_from(["python", "platform", "nvml", "libc",
                                                           "memory", "disk", "mac_ver"]), JSON)),
    files=st.dictionaries(HOST_PATHS, st.binary(max_size=200), max_size=4),
)  # fmt: skip
def test_any_recording_is_replayed_or_refused_and_nothing_is_written(
    tmp_path_factory: Any, *, manifest: Any, commands: Any, env: Any, facts: Any,
    files: dict[str, bytes],
) -> None:  # fmt: skip
    rec = tmp_path_factory.mktemp("recfuzz")
    for name, value in (("manifest.json", manifest), ("commands.json", commands),
                        ("env.json", env), ("facts.json", facts)):  # fmt: skip
        (rec / name).write_text(json.dumps(value))
    for host_path, data in files.items():
        target = rec / "root" / os.path.normpath(host_path.lstrip("/")).lstrip("./")
        if target.resolve().is_relative_to(rec.resolve()):
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_dir():
                target.write_bytes(data)
    before = Tree.of(rec)
    result = bounded(lambda: load_host(replay=rec))
    assert isinstance(result, TorchenvError) or result.python is not None
    assert before.added() == []


# -- the agent's requests ---------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "G\x00T", ""])
PATHS = st.sampled_from(
    ["/v1/status", "/v1/host", "/v1/reconcile", "/metrics", "/", "x", "/" * 9000]
)
BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"environment": JSON}).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 60000).map(lambda n: b"[" * n),
)  # fmt: skip


@given(
    method=METHODS, path=PATHS, body=BODIES,
    length=st.one_of(
        st.none(), st.integers(-3, 10**6).map(str), st.text("0123456789", max_size=5000)
    ),
    headers=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=3),
    raw=st.binary(max_size=300),
)  # fmt: skip
def test_every_agent_request_gets_a_status(
    tmp_path_factory: Any, *, method: str, path: str, body: bytes, length: str | None,
    headers: list[tuple[str, str]], raw: bytes,
) -> None:  # fmt: skip
    harness = Harness(tmp_path_factory.mktemp("agentfuzz"))
    size = str(len(body)) if length is None else length
    head = f"{method} {path} HTTP/1.1\r\nContent-Length: {size}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    for payload in (head.encode("utf-8", "replace") + b"\r\n" + body, raw):
        answer = bounded(lambda payload=payload: harness.answer(payload))
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        assert status_of(answer) in (200, 202, 400, 404, 405, 408, 411, 413, 431, 503, 505)
    assert harness.errors == []
