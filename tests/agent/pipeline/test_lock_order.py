"""What a lock starts first: uv's look at torchenv's interpreter before the host, the
requirements and the index are read, so that the compile does not wait for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.isolation import use_sim
from helpers.lockkit import index_for
from indexsim import IndexSim
from typer.testing import CliRunner

from torchenv.agent.base.options import IndexConfig, LockOptions, SelectionOptions
from torchenv.agent.cli.main import app
from torchenv.agent.host.source import HostSource
from torchenv.agent.lock.resolvers import uvwarm


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

    def start(uv: str, cache_dir: Path, env: dict[str, str]) -> None:
        order.append(f"find {cache_dir.name}" + (" again" if cache_dir in uvwarm._running else ""))
        real_start(uv, cache_dir, env)

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
