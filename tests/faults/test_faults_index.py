"""The fault suite, index faults: what a server does wrong, and what torchenv makes of it.

Rows for sync's downloads (a fault on the wheel's URL, then sync), for the index client's
answers (an endless page or metadata file: refused within its bound, memory bounded), the
page cache (a short page kept and revalidated), and the resolver's errors (named by cause).
"""

from __future__ import annotations

import contextlib
import hashlib
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.faults import HOST
from helpers.hosts import linux_host, need_uv
from helpers.lockkit import Chosen, settings_for
from indexsim import Fault, IndexSim, Knobs

from torchenv.agent.base.errors import (
    EnvironmentBuildError,
    IndexError_,
    IntegrityError,
    ResolutionError,
    TorchenvError,
)
from torchenv.agent.base.limits import MAX_METADATA, MAX_PAGE, MiB
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.env import install, sync
from torchenv.agent.index.client import IndexClient
from torchenv.agent.lock.build import lock_for
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel, PyLock, toml_safe
from torchenv.agent.lock.resolvers import UvResolver
from torchenv.agent.lock.resolvers.base import Completed, failed

pytestmark = pytest.mark.e2e

WHEELS = ("demo-1.0-py3-none-any.whl", "demo_stored-1.0-py3-none-any.whl")


def sim_lock(sim: IndexSim) -> PyLock:
    """A lock of two of the simulator's wheels on its HTTP URLs, made for HOST."""
    packages = []
    for filename in WHEELS:
        f = sim.site.files[filename]
        name, version = filename.split("-")[:2]
        wheel = LockedWheel(filename, sim.file_url(filename), f.size, f.sha256)
        packages.append(LockedPackage(name.replace("_", "-"), version, sim.pypi_url, (wheel,)))
    table = {"target": toml_safe(HOST.target_facts()), "python": HOST.python.minor}
    return PyLock(packages=tuple(packages), tool_torchenv=table)


def run_sync(lock: PyLock, tmp_path: Path) -> sync.SyncResult:
    return sync.sync(
        lock, b"lock", tmp_path / "env", host_facts=HOST.target_facts(),
        cache_dir=tmp_path / "cache", reporter=RecordingReporter(), verifier=None,
    )  # fmt: skip


@dataclass(frozen=True)
class Download:
    """A fault on the first wheel's URL; sync succeeds (retried, resumed) or is refused."""

    name: str
    fault: Fault
    refused: str | None = None  # words of the IntegrityError, when sync must refuse
    ranges: bool = True


DOWNLOAD_ROWS = [
    Download("one 500", Fault("status", "*/demo-1.0-*.whl", times=1)),
    Download("one 503", Fault("status", "*/demo-1.0-*.whl", times=1, status=503)),
    Download("one reset", Fault("reset", "*/demo-1.0-*.whl", times=1)),
    Download("one cut-short body, resumed", Fault("truncate", "*/demo-1.0-*.whl", times=2)),
    Download("one cut-short body, no ranges", Fault("truncate", "*/demo-1.0-*.whl", times=1),
             ranges=False),
    Download("a body that never ends", Fault("endless", "*/demo-1.0-*.whl", times=1),
             refused="sent more than"),
    Download("a short body", Fault("short", "*/demo-1.0-*.whl", times=-1),
             refused="does not match the lock"),
]  # fmt: skip


@pytest.mark.parametrize("row", DOWNLOAD_ROWS, ids=lambda r: r.name)
def test_sync_downloads_retry_resume_and_stop_at_the_locked_size(
    focus_sim: IndexSim,
    tmp_path: Path,
    row: Download,
) -> None:
    focus_sim.knobs.ranges = row.ranges
    focus_sim.inject(row.fault)
    lock = sim_lock(focus_sim)
    if row.refused is not None:
        with pytest.raises(IntegrityError, match=row.refused):
            run_sync(lock, tmp_path)
        assert not (tmp_path / "env").exists()
        assert not list((tmp_path / "cache").rglob("demo-1.0-*"))  # nothing kept, no .part
        assert focus_sim.bytes_sent("*/demo-1.0-*.whl") < 64 * MiB  # stopped, not drained
        return
    result = run_sync(lock, tmp_path)
    assert result.packages == (("demo", "1.0"), ("demo-stored", "1.0"))
    cached = next((tmp_path / "cache").rglob("demo-1.0-*.whl"))
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == lock.packages[0].wheel.sha256
    size = lock.packages[0].wheel.size
    requests = focus_sim.requests("*/demo-1.0-*.whl")
    if row.fault.kind == "truncate" and row.ranges:
        resumed = [None, f"bytes={size // 2}-", f"bytes={3 * size // 4}-"]
        assert [r.range for r in requests] == resumed[: len(requests)]
        assert focus_sim.bytes_sent("*/demo-1.0-*.whl") <= size + 2  # resumed, not again
    else:
        assert len(requests) == 2  # one fault, one retry


def _peak(fn: object) -> int:
    tracemalloc.start()
    with contextlib.suppress(TorchenvError):
        fn()  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_an_endless_page_is_refused_within_its_bound(focus_sim: IndexSim) -> None:
    focus_sim.inject(Fault("endless", "/simple/demo/", times=-1))
    with IndexClient(backoff=0.01) as client:
        with pytest.raises(IndexError_, match="answered more than 64 MiB"):
            client.project_page(focus_sim.pypi_url, "demo")
        peak = _peak(lambda: client.project_page(focus_sim.pypi_url, "demo"))
    assert peak < 3 * MAX_PAGE  # the page's bound, not the stream's length
    assert focus_sim.bytes_sent("/simple/demo/") < 4 * MAX_PAGE


def test_an_endless_metadata_file_is_refused_within_its_bound(
    focus_sim: IndexSim,
) -> None:
    with IndexClient(backoff=0.01) as client:
        (artifact,) = client.project_page(focus_sim.pypi_url, "demo")
        focus_sim.inject(Fault("endless", "*/demo-1.0-py3-none-any.whl.metadata", times=-1))
        with pytest.raises(IndexError_, match="answered more than 8 MiB"):
            client.metadata(artifact)
    assert focus_sim.bytes_sent("*.metadata") < 4 * MAX_METADATA


def test_a_short_page_kept_by_the_cache_is_read_again_before_saying_no_wheel(
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    """Half the page with a matching length (and the full page's ETag), then 304s."""
    indexsim.inject(Fault("short", "/whl/cu126/torch/", times=1))
    settings = settings_for(indexsim, tmp_path)
    versions = []
    for _ in range(2):
        with IndexClient(cache_dir=tmp_path / "cache", backoff=0.01) as client:
            lock = lock_for(("torch",), linux_host(), Chosen("cu126"), settings,
                            resolver=UvResolver(binary=need_uv()), client=client)  # fmt: skip
        torch = lock.package("torch")
        versions.append(torch.version if torch else None)
    assert versions == ["2.9.0+cu126", "2.9.0+cu126"]
    pages = indexsim.requests("/whl/cu126/torch/")
    assert [r.conditional for r in pages][:2] == [False, False]  # the short one, then fresh


def _uv_failure(stderr: str) -> Completed:
    return Completed(("uv", "pip", "compile"), 2, "", stderr)


UNREACHABLE = """error: Request failed after 3 retries in 6.4s
  cause: Failed to fetch: http://127.0.0.1:9/simple/six/
  cause: error sending request for url (http://127.0.0.1:9/simple/six/)
  cause: client error (Connect)
  cause: tcp connect error
  cause: Connection refused (os error 111)
"""
DISK_FULL = """error: Failed to write to the client cache
  Caused by: failed to write to file `/var/cache/uv/.tmpX/six.whl`:
  No space left on device (os error 28)
"""
CONFLICT = """  × No solution found when resolving dependencies:
  ╰─▶ Because only numpy<2 is available and you require numpy>=2, we can conclude that your
      requirements are unsatisfiable.
      ^
"""


@pytest.mark.parametrize(
    ("output", "kind", "words"),
    [
        (UNREACHABLE, IndexError_, ("could not read the index http://127.0.0.1:9/simple",
                                    "Connection refused (os error 111)", "Failed to fetch")),
        (DISK_FULL, EnvironmentBuildError, ("no space left", "os error 28")),
        (CONFLICT, ResolutionError, ("No solution found", "numpy>=2", "unsatisfiable.\n      ^")),
    ],
    ids=["unreachable index", "full disk", "conflict"],
)  # fmt: skip
def test_resolver_errors_say_the_real_cause_and_keep_the_output_whole(
    output: str, kind: type[TorchenvError], words: tuple[str, ...]
) -> None:
    error = failed("uv", _uv_failure(output), "http://127.0.0.1:9/simple")
    assert type(error) is kind
    for word in words:
        assert word in error.message, (word, error.message)
    if kind is not ResolutionError:
        assert "relax" not in (error.hint or "")


def test_installer_errors_keep_the_output_whole_and_name_a_full_disk() -> None:
    import subprocess
    import sys

    lines = "error: x\\n  caused by: y\\n  No space left on device\\n^\\n"
    script = f"import sys; sys.stderr.write('{lines}'); sys.exit(2)"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    with pytest.raises(EnvironmentBuildError) as caught:
        install._finish(process, "installing the wheels")
    message = caught.value.message
    assert "no space left on the device" in message and "caused by: y" in message
    assert message.rstrip().endswith("^")
    assert "free disk space" in (caught.value.hint or "")


def test_a_knobs_default_serves_ranges() -> None:
    assert Knobs().ranges  # the resumed-download rows rely on it


def test_a_link_whose_name_is_a_path_is_no_file_of_the_project(tmp_path: Path) -> None:
    """`..%2F` decodes to a separator: such a link is dropped from the page, and a download
    of one is refused before anything is written."""
    from torchenv.agent.index.pages import make_artifact, parse_html_page

    sha = "0" * 64
    page = (
        f'<a href="../../p/..%2F..%2Foutside%2Fdemo-1.0-py3-none-any.whl#sha256={sha}">x</a>'
        f'<a href="/p/demo-1.0-py3-none-any.whl#sha256={sha}">demo</a>'
    )
    found = parse_html_page(page, "http://127.0.0.1:9/simple/demo/", "demo")
    assert [a.filename for a in found] == ["demo-1.0-py3-none-any.whl"]
    hostile = make_artifact(
        "demo", "http://127.0.0.1:9/p/..%2F..%2Foutside%2Fdemo-1.0-py3-none-any.whl"
    )
    with IndexClient(retries=0) as client, pytest.raises(IndexError_, match="not a file name"):
        client.download(hostile, tmp_path / "dl")
    assert not list(tmp_path.rglob("*outside*")) and not (tmp_path / "dl").exists()
