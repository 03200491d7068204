"""lock's kept answer: the same lock asked again answers at once only while every input holds
and every page it rests on (torchenv's and uv's) is younger than index-max-age."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.isolation import use_sim
from helpers.kept import after_index_max_age
from helpers.kept import kept as kept_answer
from helpers.kept import run_command as lock
from indexsim import IndexSim, Knobs, build_site, default_catalog

from torchenv.agent.cli import fastpath

TARGET = ["--os", "linux", "--arch", "x86_64", "--python", "3.11",
          "--driver", "580.95.05", "--gpu", "9.0"]  # fmt: skip
LOCK = ["lock", "-r", "requirements.txt", *TARGET, "-o", "pylock.toml"]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSim]:
    site = build_site(default_catalog(pythons=("cp311",)), tmp_path_factory.mktemp("lock-site"))
    with IndexSim(site, Knobs()) as server:
        yield server


@pytest.fixture
def env(sim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_uv()
    use_sim(monkeypatch, tmp_path, sim)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text("torch\n")
    return tmp_path


def kept(capsys: pytest.CaptureFixture[str], argv: list[str] = LOCK) -> str | None:
    return kept_answer(capsys, argv)


def test_the_kept_answer_is_the_computed_one_and_the_lock_stays(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = lock(*LOCK)
    written = (env / "pylock.toml").read_bytes()
    assert first.startswith("Locked ")
    assert kept(capsys) == first
    assert lock(*LOCK) == first
    assert (env / "pylock.toml").read_bytes() == written


def test_a_changed_requirements_file_or_lock_ends_it(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock(*LOCK)
    (env / "requirements.txt").write_text("torch\ntorchvision\n")
    assert kept(capsys) is None
    lock(*LOCK)
    assert kept(capsys) is not None
    lock_file = env / "pylock.toml"
    lock_file.write_bytes(lock_file.read_bytes())  # the same bytes, written again
    assert kept(capsys) is None
    lock_file.unlink()
    assert kept(capsys) is None


def test_later_than_index_max_age_or_refresh_ends_it(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshed = [*LOCK, "--refresh"]
    lock(*refreshed)
    assert kept(capsys, refreshed) is None  # index-max-age 0: nothing is young
    lock(*LOCK)
    assert kept(capsys) is not None
    after_index_max_age(monkeypatch)
    assert kept(capsys) is None


def test_old_copies_in_uvs_page_cache_keep_nothing(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """uv answers from copies it deems fresh; a lock resting on one older than index-max-age
    is not kept, though every page torchenv read itself is young."""
    lock(*LOCK)
    pages = [p for p in (env / "cache" / "resolver").glob("simple-v*/**/*") if p.is_file()]
    assert pages
    old = fastpath.time.time() - 3600
    for page in pages:
        os.utime(page, (old, old))
    (env / "requirements.txt").write_text("torch \n")  # the same request, another input
    lock(*LOCK)
    assert kept(capsys) is None


def test_a_recorded_host_is_never_kept(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replay = ["lock", "torch", "--replay", str(HOSTS / "h100-driver580"), "--python", "3.11"]
    lock(*replay)
    assert kept(capsys, replay) is None


def test_the_interpreter_python_names_is_an_input(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    python = env / "bin" / "python3"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    argv = ["lock", "torch", *TARGET[:4], "--python", str(python), "-o", "pylock.toml"]
    lock(*argv)
    assert kept(capsys, argv) is not None
    python.unlink()
    assert kept(capsys, argv) is None


def test_a_uv_cache_entry_vanishing_at_the_end_keeps_nothing_and_exits_0(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parallel lock renames uv's page between its listing and its stat: the lock succeeded,
    so the command exits 0; it keeps no answer."""
    from torchenv.agent.pipeline import locking

    def renamed(*_: object) -> float:
        raise FileNotFoundError(2, "No such file or directory", "simple-v18/x.rkyv")

    monkeypatch.setattr(locking, "young_until", renamed)
    assert in_process(monkeypatch).startswith("Locked ")
    assert not os.path.exists(fastpath.stamp_path(os.environ, LOCK, str(env)))


def in_process(monkeypatch: pytest.MonkeyPatch) -> str:
    """LOCK run in this process as the console script runs it (armed to keep its answer)."""
    from typer.testing import CliRunner

    from torchenv.agent.cli.main import app

    monkeypatch.setattr(fastpath, "ARMED", True)
    monkeypatch.setattr(fastpath, "ARGV", LOCK)
    monkeypatch.setattr(fastpath, "ENV", fastpath.env_digest(os.environ))
    done = CliRunner().invoke(app, LOCK)
    assert done.exit_code == 0, done.output
    return done.output


def test_a_requirements_file_saved_while_the_lock_runs_keeps_nothing(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock was made from the old text: the new one must not be stamped beside it."""
    from torchenv.agent.pipeline import locking

    real = locking.lock_file

    def saved_meanwhile(*args: Any, **kwargs: Any) -> Any:
        done = real(*args, **kwargs)
        (env / "requirements.txt").write_text("torch\ntorchvision\n")
        return done

    monkeypatch.setattr(locking, "lock_file", saved_meanwhile)
    in_process(monkeypatch)
    assert kept(capsys) is None


def test_a_requirements_file_is_compared_whole_and_never_stored(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A -r file may hold up to 4 MiB: a change past its first MiB ends the kept answer. The
    stamp holds its digest, never its text (a URL in it may carry a token)."""
    from torchenv.agent.base.limits import MAX_REQUIREMENTS_FILE

    assert fastpath.TEXT_LIMIT == MAX_REQUIREMENTS_FILE
    reqs = env / "requirements.txt"
    comment = "# see https://user:s3cret-token@example.invalid/simple " + "x" * (2 << 20)
    reqs.write_text(f"torch\n{comment}a\n")
    lock(*LOCK)
    stamp = Path(fastpath.stamp_path(os.environ, LOCK, str(env))).read_bytes()
    assert b"s3cret-token" not in stamp
    assert kept(capsys) is not None
    reqs.write_text(f"torch\n{comment}b\n")  # the same size, one byte changed at 2 MiB
    assert kept(capsys) is None


def test_an_interpreter_that_is_a_script_keeps_nothing(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shim (pyenv's is a shell script) may run another interpreter while it stays as it
    was: only a binary is an input a stamp can stand for."""
    shim = env / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    argv = ["lock", "torch", *TARGET[:4], "--python", str(shim), "-o", "pylock.toml"]
    lock(*argv)
    assert kept(capsys, argv) is None


def test_a_tilde_in_python_names_the_same_interpreter_for_both(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(env))
    python = env / "bin" / "python3"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    argv = ["lock", "torch", *TARGET[:4], "--python", "~/bin/python3", "-o", "pylock.toml"]
    lock(*argv)
    assert kept(capsys, argv) is not None
    python.unlink()
    assert kept(capsys, argv) is None


def test_an_indexs_own_cache_control_wins_over_index_max_age(
    env: Path, sim: IndexSim, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """max-age shorter than index-max-age ends the kept answer sooner."""
    monkeypatch.setattr(sim.knobs, "page_cache_control", "max-age=60")
    lock(*LOCK)
    assert kept(capsys) is not None
    soon = fastpath.time.time() + 61
    monkeypatch.setattr(fastpath.time, "time", lambda: soon)
    assert kept(capsys) is None


@pytest.mark.parametrize("never", ["no-cache", "no-store"])
def test_pages_the_index_says_not_to_keep_keep_nothing(
    env: Path,
    sim: IndexSim,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    never: str,
) -> None:
    """A full run would ask the index again: the answer is not kept."""
    monkeypatch.setattr(sim.knobs, "page_cache_control", never)
    lock(*LOCK)
    assert kept(capsys) is None


def test_old_pages_of_projects_this_lock_does_not_hold_do_not_age_it(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """uv's page cache holds one entry per index and project: a project another lock read
    days ago is no page this lock rests on."""
    lock(*LOCK)
    pages = list((env / "cache" / "resolver").glob("simple-v*/**/*.rkyv"))
    assert pages and all(p.stem != "unrelated" for p in pages)
    other = pages[0].with_name("unrelated.rkyv")
    other.write_bytes(pages[0].read_bytes())
    old = fastpath.time.time() - 3600
    os.utime(other, (old, old))
    (env / "requirements.txt").write_text("torch \n")  # the same request, another input
    lock(*LOCK)
    assert kept(capsys) is not None
    assert other.exists()
