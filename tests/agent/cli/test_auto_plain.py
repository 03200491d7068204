"""A plainly spelled `auto` runs without typer, and does what the typer command does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.locks import build_lock, plain_spec, torch_spec
from helpers.plaincli import (
    CONSOLE,
    KNOWN_TYPES,
    LEFT_TO_TYPER,
    TYPER,
    command,
    masked,
    spellings,
    typer_passes,
)

from torchenv.agent.cli import auto_plain, env_run
from torchenv.agent.host.source import load_host

H100 = str(HOSTS / "h100-driver580")


def passes(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return typer_passes("auto", env_run, argv, monkeypatch, run="run_auto")


def test_the_plain_way_reads_each_of_auto_s_options_as_typer_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Derived from typer's auto: an option added there and not here fails this test."""
    params = command("auto").params
    assert {p.name for p in params} > {"as_json", "lock", "requirement_file", "gpu"}  # real
    for param in params:
        names = {*param.opts, *param.secondary_opts}
        if param.param_type_name == "argument":
            argvs = [[], ["torch"], ["torch", "--json", "numpy", ""]]
        elif names & LEFT_TO_TYPER:
            assert names <= LEFT_TO_TYPER, names
            assert all(auto_plain.plain_options(a) is None for a in spellings(param))
            continue
        else:
            kinds = {c.__name__ for c in type(param.type).__mro__}
            assert param.count or kinds & KNOWN_TYPES, (names, param.type)  # plain_options reads it
            argvs = spellings(param)
        for argv in argvs:
            assert auto_plain.plain_options(argv) == passes(argv, monkeypatch), argv


TOGETHER = {
    "a value that looks like an option": ["--lock", "--json", "--prefix", "-r"],
    "files and names": ["-r", "a.txt", "torch", "--requirement=b.txt", "-r", "c", "numpy"],
    "a recording and flags": ["--replay", H100, "--force", "--dry-run", "--json", "--xpu"],
    "a lock source": ["--lock-source=http://h/?a=b", "--lock-source-missing", "fail"],
}


@pytest.mark.parametrize("argv", TOGETHER.values(), ids=TOGETHER.keys())
def test_options_together_are_read_as_typer_reads_them(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert auto_plain.plain_options(argv) == passes(argv, monkeypatch)


NOT_PLAIN = {
    "help": ["--help"],
    "quiet given a value": ["--quiet=1", "torch"],
    "verbose beside another short option": ["torch", "-vr", "reqs.txt"],
    "a short option and its value together": ["-rreqs.txt"],
    "a short option with =": ["-r=reqs.txt"],
    "an unknown option": ["--frobnicate"],
    "an abbreviation": ["--dry"],
    "a flag given a value": ["--json=1"],
    "a value missing": ["--lock"],
    "after --": ["--", "torch"],
}


@pytest.mark.parametrize("argv", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_else_is_left_to_the_typer_command(argv: list[str]) -> None:
    assert auto_plain.plain_options(argv) is None


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_uv()
    for key in list(os.environ):
        if key.startswith("TORCHENV_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TORCHENV_USER_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TORCHENV_NO_FASTPATH", "1")  # the answer computed both ways
    monkeypatch.chdir(tmp_path)
    build_lock(tmp_path, [torch_spec(), plain_spec("filelock")], host=load_host())
    (tmp_path / "reqs.txt").write_text("torch\n")
    return tmp_path


def ran(way_in: list[str], argv: list[str], cwd: Path, fresh: bool = True) -> tuple[object, ...]:
    """An auto's exit code, stdout and stderr (ids and seconds masked), what it installed into
    `env` and the lock's bytes after it (with `fresh`, each way from nothing: no environment,
    no cache)."""
    for made in ("env", "env.torchenv", "cache") if fresh else ():
        path = cwd / made
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    environ = {**os.environ, "TORCHENV_CACHE_DIR": str(cwd / "cache")}
    done = subprocess.run([*way_in, "auto", *argv], capture_output=True, text=True, check=False,
                          timeout=300, env=environ)  # fmt: skip
    site = sorted(p.name for p in cwd.glob("env/lib/python*/site-packages/*.dist-info"))
    return (done.returncode, masked(done.stdout), masked(done.stderr), site,
            (cwd / "pylock.toml").read_bytes())  # fmt: skip


LOCKED = ["--lock", "pylock.toml", "--prefix", "env"]
BOTH_WAYS = {
    "text": ["torch", *LOCKED],
    "json": ["torch", "--json", *LOCKED],
    "a -r file": ["-r", "reqs.txt", *LOCKED],
    "dry run": ["torch", "--dry-run", *LOCKED],
    "dry run, json": ["torch", "--dry-run", "--json", *LOCKED],
    "a bad --lock name": ["torch", "--lock", "torch.lock", "--prefix", "env"],
    "a bad --lock name, json": ["torch", "--json", "--lock", "torch.lock"],
    "a bad value": ["torch", *LOCKED, "--python-version", "x.y"],
    "two names for one fact": ["torch", *LOCKED, "--python-platform", "linux", "--os", "linux"],
    "a missing recording, json": ["torch", "--json", *LOCKED, "--replay", "no-such-dir"],
    "quiet": ["torch", "-q", *LOCKED],
    "verbose": ["torch", "-v", *LOCKED],
    "left to typer: an unknown option": ["--frobnicate", *LOCKED],
    "left to typer: help": ["--help"],
}  # fmt: skip


@pytest.mark.parametrize("argv", BOTH_WAYS.values(), ids=BOTH_WAYS.keys())
def test_the_plain_way_prints_exits_and_installs_as_the_typer_command_does(
    env: Path, argv: list[str]
) -> None:
    plain = ran(CONSOLE, argv, env)
    assert plain == ran(TYPER, argv, env)
    assert plain[1] or plain[2]  # it said something: the comparison can fail


@pytest.mark.parametrize("json", [[], ["--json"]], ids=["text", "json"])
def test_the_no_op_answer_is_the_same_both_ways(env: Path, json: list[str]) -> None:
    argv = ["torch", *json, *LOCKED]
    made = ran(TYPER, argv, env)
    assert made[0] == 0 and made[3], made
    answers = [ran(way_in, argv, env, fresh=False) for way_in in (CONSOLE, TYPER)]
    assert answers[0] == answers[1]
    assert "unchanged" in answers[0][1]  # the no-op both ways: the comparison can fail
