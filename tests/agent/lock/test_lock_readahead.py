"""A forced backend names the family's index before selecting: its pages are read at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.hosts import linux_host, mac_host, need_uv
from helpers.lockkit import Chosen, index_for
from indexsim import Fault, IndexSim
from packaging.requirements import Requirement

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.base.options import LockOptions, SelectionOptions
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.index.client import IndexClient
from torchenv.agent.lock import family
from torchenv.agent.lock.build import lock_for
from torchenv.agent.lock.family import pages_ahead
from torchenv.agent.lock.resolvers import UvResolver
from torchenv.agent.pipeline.stages import lock_selected


def test_pages_ahead_names_the_index_and_the_members_the_target_takes(tmp_path: Path) -> None:
    index = index_for_urls(tmp_path)
    reqs = ["torchvision", 'torchaudio; sys_platform == "win32"', "numpy", "torch>=2.6"]
    assert pages_ahead(reqs, linux_host(), "stable", "cu126", index) == (
        "http://torch.test/whl/cu126",
        ("torch", "torchvision"),
    )
    assert pages_ahead([Requirement("torchao")], linux_host(), "nightly", "cpu", index) == (
        "http://torch.test/whl/nightly/cpu",
        ("torch", "torchao"),
    )
    assert pages_ahead([], mac_host(), "stable", "mps", index) == (  # PyPI's, as lock's
        "http://pypi.test/simple",
        ("torch", "torchvision", "torchaudio"),
    )
    assert pages_ahead(["torch"], linux_host(), "stable", "auto", index) is None
    assert pages_ahead(["torch"], linux_host(), "stable", "cu9x", index) is None
    assert pages_ahead(["-e ."], linux_host(), "stable", "cu126", index) is None


def index_for_urls(tmp_path: Path) -> object:
    class Sim:
        torch_index_url = "http://torch.test/whl"
        pypi_url = "http://pypi.test/simple"

    return index_for(Sim(), tmp_path)  # type: ignore[arg-type]


def lock(sim: IndexSim, tmp_path: Path, backend: str) -> None:
    options = LockOptions(SelectionOptions("stable", backend, index_for(sim, tmp_path)), "uv")
    lock_selected(linux_host(), ["torch", "torchvision", "torchaudio"], options, Reporter(),
                  resolver=UvResolver(binary=need_uv()))  # fmt: skip


def test_a_forced_backend_reads_the_family_pages_in_one_round_trip(
    indexsim: IndexSim, tmp_path: Path
) -> None:
    indexsim.knobs.latency = 0.15
    lock(indexsim, tmp_path, "cu126")
    pages = [r.path for r in indexsim.requests("/whl/*/")]
    assert sorted(pages) == [f"/whl/cu126/{p}/" for p in ("torch", "torchaudio", "torchvision")]
    assert indexsim.round_trips("/whl/*/") == 1  # selection's torch page, the lock's others


@pytest.mark.parametrize("page", ["torch", "torchvision"])
def test_a_read_ahead_page_s_error_is_the_error_without_read_ahead(
    indexsim: IndexSim, tmp_path: Path, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 to every try of one page: the same message after the same requests."""
    indexsim.inject(Fault("status", f"/whl/cu126/{page}/", times=-1, status=503))
    seen = []
    for ahead in (True, False):
        if not ahead:
            monkeypatch.setattr(family, "pages_ahead", lambda *_a: None)
        with pytest.raises(IndexError_) as caught:
            lock(indexsim, tmp_path / str(ahead), "cu126")
        seen.append((caught.value.message, sorted(r.path for r in indexsim.requests())))
        indexsim.reset_counters()
    assert seen[0] == seen[1]
    assert "503" in seen[0][0] and f"/whl/cu126/{page}/" in seen[0][1]


def test_torch_s_metadata_is_read_beside_the_other_members_pages(
    indexsim: IndexSim, tmp_path: Path
) -> None:
    """No metadata files (ranges from the wheel): torch's first range read goes out with
    torchvision's and torchaudio's page reads, not after them."""
    indexsim.knobs.pep658 = False
    with IndexClient() as client:  # torch's page known already, as after selecting
        index = indexsim.torch_index_url + "/cu126"
        client.project_page(index, "torch")
        indexsim.reset_counters()
        indexsim.knobs.latency = 0.15
        lock_for(["torch", "torchvision", "torchaudio"], linux_host(), Chosen("cu126"),
                 index_for(indexsim, tmp_path), resolver=UvResolver(binary=need_uv()),
                 client=client)  # fmt: skip
    reads = indexsim.requests("/whl/cu126/torch-2.9.0*")
    (torch_tail,) = [r for r in reads if r.range == "bytes=-65536"]
    pages = indexsim.requests("/whl/cu126/torch*/")
    assert {r.path for r in pages} == {"/whl/cu126/torchvision/", "/whl/cu126/torchaudio/"}
    assert all(torch_tail.overlaps(page) for page in pages)
