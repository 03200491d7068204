"""A plainly spelled `lock` runs without typer, and does what the typer command does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import HOSTS, plaincli
from helpers.hosts import need_uv
from helpers.isolation import use_sim
from helpers.plaincli import CONSOLE, KNOWN_TYPES, TYPER, command, masked, spellings, typer_passes
from indexsim import IndexSim

from torchenv.agent.cli import lock_plain, lock_run

H100 = str(HOSTS / "h100-driver580")
LEFT_TO_TYPER = {*plaincli.LEFT_TO_TYPER, "--publish"}
ONE_HOST = {"--replay", "--host-report"}  # more than one: --publish's, left to typer


def test_the_plain_way_reads_each_of_lock_s_options_as_typer_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Derived from typer's lock: an option added there and not here fails this test."""
    params = command("lock").params
    assert {p.name for p in params} > {"as_json", "requirement_file", "output", "gpu"}
    for param in params:
        names = {*param.opts, *param.secondary_opts}
        if param.param_type_name == "argument":
            argvs = [[], ["torch"], ["torch", "--json", "numpy", ""]]
        elif names & LEFT_TO_TYPER:
            assert names <= LEFT_TO_TYPER, names
            assert all(lock_plain.plain_options(a) is None for a in spellings(param))
            continue
        else:
            kinds = {c.__name__ for c in type(param.type).__mro__}
            assert param.count or kinds & KNOWN_TYPES, (names, param.type)  # plain_options reads it
            argvs = spellings(param)
        for argv in argvs:
            if names & ONE_HOST and argv.count(argv[0]) > 1:
                assert lock_plain.plain_options(argv) is None, argv
                continue
            assert lock_plain.plain_options(argv) == typer_passes(
                "lock", lock_run, argv, monkeypatch
            ), argv


TOGETHER = {
    "a value that looks like an option": ["-o", "--json", "--os", "-r"],
    "files and names": ["-r", "a.txt", "torch", "--requirement=b.txt", "-r", "c", "numpy"],
    "one recording and flags": ["--replay", H100, "--check", "--refresh", "--json"],
}


@pytest.mark.parametrize("argv", TOGETHER.values(), ids=TOGETHER.keys())
def test_options_together_are_read_as_typer_reads_them(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lock_plain.plain_options(argv) == typer_passes("lock", lock_run, argv, monkeypatch)


NOT_PLAIN = {
    "help": ["--help"],
    "quiet given a value": ["--quiet=2"],
    "quiet beside another short option": ["-qo", "pylock.toml"],
    "a short option and its value together": ["-rreqs.txt"],
    "a short option with =": ["-o=pylock.toml"],
    "short flags together": ["-or", "x"],
    "publish": ["--publish", "out", "--replay", H100],
    "two hosts": ["--replay", H100, "--host-report", "h.json"],
    "an unknown option": ["--frobnicate"],
    "a value missing": ["-o"],
    "after --": ["--", "torch"],
}


@pytest.mark.parametrize("argv", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_else_is_left_to_the_typer_command(argv: list[str]) -> None:
    assert lock_plain.plain_options(argv) is None


@pytest.fixture
def env(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_uv()
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.setenv("TORCHENV_NO_FASTPATH", "1")  # the answer computed both ways
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reqs.txt").write_text("torch==2.9.0\ncertifi\n")
    return tmp_path


def ran(way_in: list[str], argv: list[str], cwd: Path) -> tuple[int, str, str, bytes | None]:
    """Both ways' stdout, stderr (how long each step took masked) and exit code, and the lock
    they wrote (each its own)."""
    for lock in cwd.glob("pylock*.toml"):
        lock.unlink()
    done = subprocess.run([*way_in, "lock", *argv], capture_output=True, text=True,
                          check=False, timeout=300, env=dict(os.environ))  # fmt: skip
    written = sorted(cwd.glob("pylock*.toml"))
    lock = written[0].read_bytes() if written else None
    return done.returncode, masked(done.stdout), masked(done.stderr), lock


BACKEND = ["--replay", H100, "--backend", "cu126"]
BOTH_WAYS = {
    "json": ["torch==2.9.0", "--json", *BACKEND],
    "text": ["torch==2.9.0", *BACKEND],
    "a -r file and -o": ["-r", "reqs.txt", "-o", "pylock.gpu.toml", *BACKEND],
    "a bad -o name": ["torch", "-o", "torch.lock", *BACKEND],
    "a bad -o name, json": ["torch", "--json", "-o", "torch.lock", *BACKEND],
    "nothing fits": ["torch>=99", *BACKEND],
    "quiet": ["torch==2.9.0", "-q", *BACKEND],
    "verbose": ["torch==2.9.0", "-v", *BACKEND],
    "left to typer: an unknown option": ["--frobnicate", *BACKEND],
    "left to typer: help": ["--help"],
}  # fmt: skip


@pytest.mark.parametrize("argv", BOTH_WAYS.values(), ids=BOTH_WAYS.keys())
def test_the_plain_way_prints_exits_and_writes_as_the_typer_command_does(
    env: Path, argv: list[str]
) -> None:
    plain = ran(CONSOLE, argv, env)
    assert plain == ran(TYPER, argv, env)
    assert plain[1] or plain[2]  # it said something: the comparison can fail


@pytest.mark.parametrize("json", [[], ["--json"]], ids=["text", "json"])
def test_check_says_the_same_both_ways(env: Path, json: list[str]) -> None:
    made = subprocess.run([*TYPER, "lock", "torch==2.9.0", *BACKEND], capture_output=True,
                          check=False, timeout=300, env=dict(os.environ))  # fmt: skip
    assert made.returncode == 0, made.stderr
    for argv in ([*json, "--check", "--replay", H100],
                 [*json, "--check", "--replay", H100, "--arch", "aarch64"]):  # fmt: skip
        answers = [subprocess.run([*way, "lock", *argv], capture_output=True, text=True,
                                  check=False, timeout=300, env=dict(os.environ))
                   for way in (CONSOLE, TYPER)]  # fmt: skip
        plain, typer_way = ((a.returncode, a.stdout, a.stderr) for a in answers)
        assert plain == typer_way
    assert plain[0] == 1  # the mismatch: the comparison can fail
