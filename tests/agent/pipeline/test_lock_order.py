"""What a lock starts first: the selection's torch pages before the lock's own code is loaded,
and uv's look at torchenv's interpreter before the host, the requirements and the index are
read, so that neither waits on the other."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import linux_host, need_uv
from helpers.isolation import use_sim
from helpers.lockkit import index_for
from indexsim import IndexSim
from typer.testing import CliRunner

from torchenv.agent.base.options import IndexConfig, LockOptions, SelectionOptions
from torchenv.agent.cli.main import app
from torchenv.agent.host.source import HostSource
from torchenv.agent.index.client import IndexClient
from torchenv.agent.lock.resolvers import uvwarm
from torchenv.agent.pipeline.select_with_index import begin_selection, run_selection

LATENCY = 0.2  # seconds before each answer: long enough to tell "asked now" from "asked later"


def _torch_pages(sim: IndexSim) -> list[str]:
    return sorted(r.path for r in sim.requests("/whl/*/torch/"))


def test_begin_selection_asks_for_the_first_round_s_pages_before_it_returns(
    indexsim: IndexSim, tmp_path: Path
) -> None:
    """The pages are answered while the caller does other work; finishing takes them (no page
    is asked for twice) and chooses what run_selection chooses."""
    options = SelectionOptions("stable", "auto", index_for(indexsim, tmp_path / "a"))
    expected = run_selection(linux_host(), ("torch",), options)
    asked = _torch_pages(indexsim)
    indexsim.reset_counters()
    indexsim.knobs.latency = LATENCY
    options = SelectionOptions("stable", "auto", index_for(indexsim, tmp_path / "b"))
    with IndexClient(cache_dir=options.index.cache_dir) as client:
        finish = begin_selection(linux_host(), ("torch",), options, client=client)
        deadline = time.monotonic() + 10  # the caller's own work: the pages arrive meanwhile
        while _torch_pages(indexsim) != asked and time.monotonic() < deadline:
            time.sleep(LATENCY / 4)
        before = _torch_pages(indexsim)
        got = finish()
    assert asked and before == asked  # every page the selection reads, asked for at once
    assert _torch_pages(indexsim) == asked  # finishing read none again
    assert (got.backend, got.torch, got.index_url) == (
        expected.backend,
        expected.torch,
        expected.index_url,
    )


def test_begin_selection_asks_nothing_where_the_kept_listings_are_young(
    indexsim: IndexSim, tmp_path: Path
) -> None:
    index = index_for(indexsim, tmp_path)
    options = SelectionOptions("stable", "auto", index)
    with IndexClient(cache_dir=index.cache_dir) as client:
        begin_selection(linux_host(), ("torch",), options, client=client)()
    indexsim.reset_counters()
    with IndexClient(cache_dir=index.cache_dir) as client:
        begin_selection(linux_host(), ("torch",), options, client=client)
        time.sleep(0.2)
    assert indexsim.requests() == []


def test_lock_starts_uv_s_interpreter_look_before_it_reads_the_host(
    indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `uv python find` into the resolver's cache, started before the host is loaded; the
    compile waited for that one (none is left running once the lock is written)."""
    need_uv()
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.chdir(tmp_path)
    order: list[str] = []
    real_start, real_load = uvwarm.start, HostSource.load

    def start(uv: str, cache_dir: Path) -> None:
        order.append(f"find {cache_dir.name}" + (" again" if cache_dir in uvwarm._running else ""))
        real_start(uv, cache_dir)

    def load(self: HostSource, probe: object) -> object:
        order.append("host")
        return real_load(self, probe)  # type: ignore[arg-type]

    monkeypatch.setattr(uvwarm, "start", start)
    monkeypatch.setattr(HostSource, "load", load)
    result = CliRunner().invoke(
        app, ["lock", "torch", "--replay", str(HOSTS / "h100-driver580"), "--backend", "cu126"]
    )
    assert result.exit_code == 0, result.output
    assert order[:2] == ["find resolver", "host"]
    assert "find resolver" not in order[2:]  # the resolver took the running one
    assert uvwarm._running == {}


def test_a_lock_that_stops_before_resolving_leaves_no_find_running(
    indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock refused after the find started (a host that cannot be read) stops it; one
    refused for its -o name (PEP 751's names) starts none."""
    need_uv()
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.chdir(tmp_path)
    started: list[Path] = []
    real_start = uvwarm.start
    monkeypatch.setattr(
        uvwarm, "start", lambda uv, cache: started.append(cache) or real_start(uv, cache)
    )
    replay = str(HOSTS / "h100-driver580")
    result = CliRunner().invoke(app, ["lock", "torch", "--replay", replay, "-o", "locked.toml"])
    assert result.exit_code == 2, result.output
    assert started == []  # the name is looked at before anything starts
    missing = str(tmp_path / "no-such-host")
    result = CliRunner().invoke(app, ["lock", "torch", "--replay", missing])
    assert result.exit_code == 1 and "cannot replay" in result.output, result.output
    assert started == [tmp_path / "cache" / "resolver"]  # it was started: the check can fail
    assert uvwarm._running == {}


def test_a_resolver_that_cannot_run_fails_before_any_request(
    indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchenv.agent.base.errors import ResolutionError
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.pipeline.stages import lock_selected

    monkeypatch.setenv("TORCHENV_UV", "")  # no uv, so --resolver uv cannot run
    options = LockOptions(SelectionOptions("stable", "auto", index_for(indexsim, tmp_path)), "uv")
    with pytest.raises(ResolutionError, match="TORCHENV_UV"):
        lock_selected(linux_host(), ["torch"], options, Reporter())
    assert indexsim.requests() == []


@pytest.mark.parametrize("resolver", ["pip", "uv"])
def test_the_early_look_runs_only_where_uv_will_resolve(
    resolver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A uv that records how it was asked: `--resolver pip` and TORCHENV_UV="" start nothing."""
    record = tmp_path / "asked"
    fake = tmp_path / "uv"
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("TORCHENV_UV", str(fake))
    index = index_for_paths(tmp_path)
    uvwarm.ahead(LockOptions(SelectionOptions("stable", "auto", index), resolver))
    uvwarm.wait(index.cache_dir / "resolver")
    if resolver == "pip":
        assert not record.exists()
    else:
        assert record.read_text().split()[:3] == ["python", "find", sys.executable]
        assert str(index.cache_dir / "resolver") in record.read_text()
    record.unlink(missing_ok=True)
    monkeypatch.setenv("TORCHENV_UV", "")
    uvwarm.ahead(LockOptions(SelectionOptions("stable", "auto", index), "uv"))
    uvwarm.wait(index.cache_dir / "resolver")
    assert not record.exists()


def index_for_paths(tmp_path: Path) -> IndexConfig:
    class Urls:
        torch_index_url = "http://torch.test/whl"
        pypi_url = "http://pypi.test/simple"

    return index_for(Urls(), tmp_path)  # type: ignore[arg-type]
