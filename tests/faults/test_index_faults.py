"""Downloads and faults: retries on 500 and resets, refusal of wrong hashes and cut-short bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from indexsim import Fault, IndexSim
from indexsim.focus import FOCUS_WHEELS

from torchenv.agent.base.errors import IndexError_, IntegrityError
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.index.client import IndexClient
from torchenv.agent.index.model import Artifact

FAST: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.02}


def pypi_demo(client: IndexClient, sim: IndexSim, name: str = "demo") -> Artifact:
    (art,) = client.project_page(sim.pypi_url, name)
    return art


def torch_demo(client: IndexClient, sim: IndexSim, name: str = "demo") -> Artifact:
    (art,) = client.project_page(sim.torch_index_url + "/cu126", name)
    return art


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


class Progress(Reporter):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int | None]] = []

    def progress(self, task: str, done: int, total: int | None) -> None:
        self.seen.append((task, done, total))


def test_download_streams_checks_and_reports(focus_sim: IndexSim, tmp_path: Path) -> None:
    progress = Progress()
    with IndexClient(reporter=progress) as client:
        art = pypi_demo(client, focus_sim, "bigtorch")
        path = client.download(art, tmp_path / "dl")
    site_file = focus_sim.site.files[art.filename]
    assert path == tmp_path / "dl" / art.filename
    assert path.read_bytes() == site_file.path.read_bytes()
    assert leftovers(tmp_path / "dl") == [art.filename]
    assert progress.seen[-1] == (f"download {art.filename}", site_file.size, site_file.size)
    assert client.stats.by_kind["download"].bytes_fetched == site_file.size


def test_download_reuses_a_verified_file(focus_sim: IndexSim, tmp_path: Path) -> None:
    with IndexClient() as client:
        art = pypi_demo(client, focus_sim)
        client.download(art, tmp_path)
        client.download(art, tmp_path)
    assert focus_sim.count("*.whl") == 1


@pytest.mark.parametrize("kind", ["status", "reset"])
def test_page_fault_is_retried(focus_sim: IndexSim, kind: str) -> None:
    focus_sim.inject(Fault(kind, "/simple/demo/", times=2))
    with IndexClient(**FAST) as client:
        art = pypi_demo(client, focus_sim)
    assert art.filename == FOCUS_WHEELS[0].filename
    assert focus_sim.count("/simple/demo/") == 3
    assert client.stats.retries == 2


@pytest.mark.parametrize("kind", ["status", "reset", "truncate"])
def test_download_fault_is_retried(focus_sim: IndexSim, tmp_path: Path, kind: str) -> None:
    focus_sim.inject(Fault(kind, "*/bigtorch-*.whl", times=1))
    with IndexClient(**FAST) as client:
        art = pypi_demo(client, focus_sim, "bigtorch")
        path = client.download(art, tmp_path)
    assert path.read_bytes() == focus_sim.site.files[art.filename].path.read_bytes()
    assert focus_sim.count("*/bigtorch-*.whl") == 2
    assert leftovers(tmp_path) == [art.filename]


def test_range_fault_is_retried(focus_sim: IndexSim) -> None:
    focus_sim.inject(Fault("status", "*/demo-1.0-*.whl", times=1, status=503))
    with IndexClient(**FAST) as client:
        meta = client.metadata(torch_demo(client, focus_sim))
    assert meta.name == "demo"
    assert focus_sim.count("*/demo-1.0-*.whl", status=503) == 1


def test_persistent_500_gives_up_with_a_hint(focus_sim: IndexSim) -> None:
    focus_sim.inject(Fault("status", "/simple/demo/", times=-1))
    with IndexClient(retries=2, **FAST) as client, pytest.raises(IndexError_) as caught:
        client.project_page(focus_sim.pypi_url, "demo")
    err = caught.value
    assert not isinstance(err, IntegrityError)
    assert focus_sim.pypi_url + "/demo/" in err.message and "HTTP 500" in err.message
    assert err.hint and "torchenv config" in err.hint
    assert focus_sim.count("/simple/demo/") == 3


def test_unreachable_index_is_an_index_error() -> None:
    with IndexClient(retries=1, timeout=2, **FAST) as client, pytest.raises(IndexError_) as caught:
        client.project_page("http://127.0.0.1:9/simple", "demo")  # discard port: refused
    assert "127.0.0.1:9" in caught.value.message


def test_wrong_hash_is_refused_and_nothing_is_left(focus_sim: IndexSim, tmp_path: Path) -> None:
    focus_sim.knobs.wrong_hash.add(FOCUS_WHEELS[0].filename)
    with IndexClient(**FAST) as client:
        art = torch_demo(client, focus_sim)
        with pytest.raises(IntegrityError) as caught:
            client.download(art, tmp_path)
    assert art.url in caught.value.message and "sha256" in caught.value.message
    assert leftovers(tmp_path) == []
    assert focus_sim.count("*.whl") == 1  # a hash mismatch is not retried


def test_persistently_truncated_body_is_an_integrity_error(
    focus_sim: IndexSim, tmp_path: Path
) -> None:
    focus_sim.inject(Fault("truncate", "*/bigtorch-*.whl", times=-1))
    with IndexClient(retries=2, **FAST) as client:
        art = torch_demo(client, focus_sim, "bigtorch")
        with pytest.raises(IntegrityError) as caught:
            client.download(art, tmp_path)
    assert "cut short" in caught.value.message
    assert leftovers(tmp_path) == []
    assert focus_sim.count("*/bigtorch-*.whl") == 3


@pytest.mark.parametrize("index", ["pypi", "pytorch"])
def test_short_but_consistent_body_is_refused(
    focus_sim: IndexSim, tmp_path: Path, index: str
) -> None:
    """Half the file with a matching Content-Length: a size (PyPI lists sizes) or hash error."""
    focus_sim.inject(Fault("short", "*/demo-1.0-*.whl", times=-1))
    with IndexClient(**FAST) as client:
        art = pypi_demo(client, focus_sim) if index == "pypi" else torch_demo(client, focus_sim)
        with pytest.raises(IntegrityError) as caught:
            client.download(art, tmp_path)
    assert ("bytes" if index == "pypi" else "sha256") in caught.value.message
    assert leftovers(tmp_path) == []


def test_a_failed_download_keeps_the_previous_file(focus_sim: IndexSim, tmp_path: Path) -> None:
    with IndexClient(**FAST) as client:
        art = torch_demo(client, focus_sim)
        good = client.download(art, tmp_path).read_bytes()
        (tmp_path / art.filename).write_bytes(b"stale")  # fails the reuse check
        focus_sim.knobs.wrong_hash.add(art.filename)
    with IndexClient(**FAST) as client:  # a later command reads the page again
        art_wrong = torch_demo(client, focus_sim)
        with pytest.raises(IntegrityError):
            client.download(art_wrong, tmp_path)
    assert good and (tmp_path / art.filename).read_bytes() == b"stale"
    assert leftovers(tmp_path) == [art.filename]
