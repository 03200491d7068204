"""uv started early: `uv pip compile -` waits for its requirements while the lock reads."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers.hosts import linux_host, need_uv
from indexsim import IndexSim

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.lock.resolvers import ResolveRequest, UvResolver, target_of
from torchenv.agent.lock.resolvers.standin import direct_reference, write_standin

TORCH = "torch-2.9.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl"


def request(sim: IndexSim, tmp_path: Path, *extra: str) -> ResolveRequest:
    metadata = sim.site.files[TORCH].metadata
    assert metadata is not None
    standin = write_standin(tmp_path / "standins", TORCH, metadata)
    return ResolveRequest(
        requirements=(direct_reference("torch", frozenset(), standin), *extra),
        target=target_of(linux_host()),
        index_url=sim.pypi_url,
        workdir=tmp_path,
        cache_dir=tmp_path / "cache",
    )


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[Any]]:
    """Every process the resolver starts, as started."""
    seen: list[subprocess.Popen[Any]] = []
    real = subprocess.Popen

    def spy(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        process = real(*args, **kwargs)
        seen.append(process)
        return process

    monkeypatch.setattr(subprocess, "Popen", spy)
    return seen


def compiles(processes: list[subprocess.Popen[Any]]) -> list[list[str]]:
    return [list(p.args) for p in processes if "compile" in list(p.args)]  # type: ignore[arg-type]


def test_the_early_compile_is_the_one_that_resolves(
    indexsim: IndexSim, tmp_path: Path, started: list[subprocess.Popen[Any]]
) -> None:
    req = request(indexsim, tmp_path, "filelock")
    (tmp_path / "plain").mkdir()
    plain = dataclasses.replace(req, workdir=tmp_path / "plain")
    expected = UvResolver(binary=need_uv()).resolve(plain)  # from a requirements file
    assert (tmp_path / "plain" / "requirements.in").exists()
    started.clear()
    resolver = UvResolver(binary=need_uv())
    resolver.start(dataclasses.replace(req, requirements=()))
    (argv,) = compiles(started)  # started before any requirement is known
    assert argv[3] == "-"
    assert resolver.resolve(req).pins == expected.pins
    resolver.close()
    assert compiles(started) == [argv]  # fed, not started again
    assert not (tmp_path / "requirements.in").exists()


def test_an_early_compile_s_failure_shows_stdin_in_its_argv(
    indexsim: IndexSim, tmp_path: Path, started: list[subprocess.Popen[Any]]
) -> None:
    req = request(indexsim, tmp_path, "filelock<1")
    resolver = UvResolver(binary=need_uv())
    resolver.start(req)
    with pytest.raises(ResolutionError, match="filelock") as caught:
        resolver.resolve(req)
    argv = caught.value.details["argv"]
    assert argv[1:4] == ["pip", "compile", "-"] and len(compiles(started)) == 1


def test_an_early_compile_left_unused_is_ended(
    indexsim: IndexSim, tmp_path: Path, started: list[subprocess.Popen[Any]]
) -> None:
    req = request(indexsim, tmp_path)
    resolver = UvResolver(binary=need_uv())
    resolver.start(req)
    resolver.start(req)  # one per target and index
    resolver.close()
    (early,) = [p for p in started if "compile" in list(p.args)]  # type: ignore[arg-type]
    assert early.returncode is not None  # ended and reaped: no process left behind
    other = dataclasses.replace(req, index_url=indexsim.pypi_url + "/")
    resolver.start(other)  # another index than the resolve's: ended, the resolve runs its own
    assert resolver.resolve(req).pins
    resolver.close()
    assert all(p.returncode is not None for p in started)
    assert len(compiles(started)) == 3 and compiles(started)[2][3] != "-"
