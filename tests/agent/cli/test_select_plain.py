"""A plainly spelled `select` runs without typer, and does what the typer command does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.isolation import use_sim
from helpers.plaincli import (
    CONSOLE,
    KNOWN_TYPES,
    LEFT_TO_TYPER,
    TYPER,
    command,
    spellings,
    typer_passes,
)
from indexsim import IndexSim

from torchenv.agent.cli import select_plain, select_run

H100 = str(HOSTS / "h100-driver580")


def test_the_plain_way_reads_each_of_select_s_options_as_typer_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Derived from typer's select: an option added there and not here fails this test."""
    params = command("select").params
    assert {p.name for p in params} > {"as_json", "replay", "gpu"}  # the names are real ones
    for param in params:
        names = {*param.opts, *param.secondary_opts}
        if param.param_type_name == "argument":
            argvs = [[], ["torch"], ["torch", "--json", "torchvision", ""]]
        elif names & LEFT_TO_TYPER:
            assert names <= LEFT_TO_TYPER, names
            assert all(select_plain.plain_options(a) is None for a in spellings(param))
            continue
        else:
            kinds = {c.__name__ for c in type(param.type).__mro__}
            assert param.count or kinds & KNOWN_TYPES, (names, param.type)  # plain_options reads it
            argvs = spellings(param)
        for argv in argvs:
            assert select_plain.plain_options(argv) == typer_passes(
                "select", select_run, argv, monkeypatch
            ), argv


TOGETHER = {
    "a value that looks like an option": ["--os", "--json"],
    "an empty value": ["--os=", "--replay", ""],
    "a value with =": ["--index-url=http://h/?a=b"],
    "interspersed": ["torch", "--gpu", "8.6", "numpy", "--torch-backend=cpu", "--backend", "x"],
}


@pytest.mark.parametrize("argv", TOGETHER.values(), ids=TOGETHER.keys())
def test_options_together_are_read_as_typer_reads_them(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert select_plain.plain_options(argv) == typer_passes("select", select_run, argv, monkeypatch)


NOT_PLAIN = {
    "help": ["--help"],
    "help, short": ["--json", "-h"],
    "quiet given a value": ["--quiet=1", "--json"],
    "verbose beside help": ["--replay", H100, "-vh"],
    "an unknown option": ["--frobnicate"],
    "an abbreviation": ["--js"],
    "a flag given a value": ["--json=1"],
    "a value missing": ["--os"],
    "a lone dash": ["-"],
    "after --": ["--", "torch"],
}


@pytest.mark.parametrize("argv", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_else_is_left_to_the_typer_command(argv: list[str]) -> None:
    assert select_plain.plain_options(argv) is None


@pytest.fixture
def env(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.setenv("TORCHENV_NO_FASTPATH", "1")  # the answer computed both ways
    monkeypatch.chdir(tmp_path)
    report = subprocess.run([*TYPER, "probe", "--json", "--replay", H100], capture_output=True,
                            check=True, text=True, timeout=120, env=dict(os.environ))  # fmt: skip
    (tmp_path / "h100.json").write_text(report.stdout)
    return tmp_path


def ran(way_in: list[str], argv: list[str], stdout: int = subprocess.PIPE) -> tuple[int, str, str]:
    done = subprocess.run([*way_in, "select", *argv], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, check=False, timeout=120, env=dict(os.environ))  # fmt: skip
    return done.returncode, done.stdout or "", done.stderr


FLAGS = ["--os", "linux", "--arch", "x86_64", "--python", "3.11", "--driver", "580.95.05",
         "--gpu", "9.0"]  # fmt: skip
BOTH_WAYS = {
    "json, recorded host": ["--json", "--replay", H100],
    "text, recorded host": ["--replay", H100],
    "explain": ["--explain", "--replay", H100, "torch", "torchvision"],
    "a host report": ["--json", "--host-report", "h100.json"],
    "flags": [*FLAGS, "--channel=stable"],
    "offline": ["--offline", *FLAGS],
    "no build fits": ["torch>=99", "--replay", H100],
    "no build fits, json": ["--json", "torch>=99", *FLAGS],
    "a bad value": ["--python-version", "x.y", "--replay", H100],
    "a bad value, json": ["--json", "--python-version", "x.y"],
    "two names for one fact": ["--python-platform", "linux", "--os", "linux"],
    "an unknown backend": ["--backend", "cu1", "--replay", H100],
    "a missing recording": ["--replay", "no-such-dir"],
    "an unreadable host report, json": ["--json", "--host-report", "/dev/null"],
    "quiet": ["-q", "--replay", H100],
    "verbose, a bad value": ["-vv", "--python-version", "x.y", "--replay", H100],
    "left to typer: an unknown option": ["--frobnicate", "--replay", H100],
    "left to typer: help": ["--help"],
    "left to typer: a value missing": ["--replay"],
}  # fmt: skip


@pytest.mark.parametrize("argv", BOTH_WAYS.values(), ids=BOTH_WAYS.keys())
def test_the_plain_way_prints_and_exits_as_the_typer_command_does(
    env: Path, argv: list[str]
) -> None:
    plain = ran(CONSOLE, argv)
    assert plain == ran(TYPER, argv)
    assert plain[1] or plain[2]  # it said something: the comparison can fail


@pytest.mark.parametrize("argv", [["--json", *FLAGS], ["--json", "--python-version", "x.y"]])
@pytest.mark.parametrize("way_in", [CONSOLE, TYPER], ids=["plain", "typer"])
def test_to_a_closed_stdout_both_ways_exit_1_quietly(
    env: Path, way_in: list[str], argv: list[str]
) -> None:
    """The reader went away (`select --json | head -0`): the answer or the error cannot be
    written, and the command stops with 1 and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        assert ran(way_in, argv, stdout=write_end) == (1, "", "")
    finally:
        os.close(write_end)


LEAVE = """
import atexit, sys
from torchenv.agent.cli.entry import leave
if sys.argv[1] == "atexit":
    atexit.register(lambda: print("atexit ran"))
print("buffered", end="")
sys.stderr.write("err")
leave(3)
"""


@pytest.mark.parametrize("how", ["plain", "atexit"])
def test_the_way_out_flushes_both_streams_and_runs_what_was_registered(how: str) -> None:
    done = subprocess.run([sys.executable, "-c", LEAVE, how], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (3, "err")
    assert done.stdout == ("buffered" if how == "plain" else "bufferedatexit ran\n")
