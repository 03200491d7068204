"""A plainly spelled `entrypoint` runs without typer, and does what the typer command does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from torchenv.agent.cli.entrypoint import plain_options

CONSOLE = [sys.executable, "-m", "torchenv.agent"]  # the console script's way in: plain first
TYPER = [sys.executable, "-c", "from torchenv.agent.cli.main import main; main()"]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    provision: list[str] | None  # the provisioner's argv, None if it never ran
    command: list[str] | None  # the command's argv, None if it never ran


def run(
    way_in: list[str],
    args: list[str],
    tmp_path: Path,
    provision_exit: int = 0,
    stdout: int = subprocess.PIPE,
) -> Ran:
    """`entrypoint ARGS` with a provisioner and a command that write down how they were run;
    SPY in ARGS is the provisioner, CMD the command; stdout: where the output goes."""
    for name in ("provision.json", "command.json"):
        (tmp_path / name).unlink(missing_ok=True)
    spy = tmp_path / "spy.py"
    spy.write_text("import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n"
                   f"sys.exit({provision_exit})\n")  # fmt: skip
    words = {"SPY": f"{sys.executable} {spy} {tmp_path / 'provision.json'}",
             "CMD": sys.executable, "CMDARGS": str(spy)}  # fmt: skip
    argv = [words.get(a, a) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHENV_", "UV_"))}
    env["TORCHENV_USER_CONFIG"] = env["TORCHENV_SYSTEM_CONFIG"] = str(tmp_path / "none.toml")
    done = subprocess.run([*way_in, "entrypoint", *argv], cwd=tmp_path, env=env, text=True,
                          stdout=stdout, stderr=subprocess.PIPE, check=False,
                          timeout=120)  # fmt: skip

    def read(name: str) -> list[str] | None:
        path = tmp_path / name
        return json.loads(path.read_text()) if path.exists() else None

    return Ran(done.returncode, done.stdout or "", done.stderr, read("provision.json"),
               read("command.json"))  # fmt: skip


COMMAND = ["CMD", "CMDARGS", "command.json", "-v", "--prefix", "x"]  # its own options are its own
CASES = {
    "after --": ["--provisioner", "SPY", "--prefix", "env", "--", *COMMAND],
    "at the first word": ["--provisioner=SPY", "--prefix=env", *COMMAND],
    "every option": ["--json", "--provisioner", "SPY", "-r", "a.txt", "--requirement", "b.txt",
                     "--lock-source", "/srv/locks", "--torch-index-url", "http://127.0.0.1:1/whl",
                     "--index-url", "http://127.0.0.1:1/simple", "--auto-args", "--replay /h",
                     "--", *COMMAND],
    "given twice: the last": ["--prefix", "one", "--provisioner", "SPY", "--prefix", "two",
                              "--", *COMMAND],
    "a missing -r file": ["--provisioner", "SPY", "-r", "missing.txt", "--", *COMMAND],
    "-r naming a requirement": ["--provisioner", "SPY", "-r", "numpy", "--", *COMMAND],
    "an empty command": ["--provisioner", "SPY", "--", ""],
    "a command not found": ["--provisioner", "SPY", "--", "no-such-command-torchenv"],
}  # fmt: skip


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("provision_exit", [0, 1, 7])
def test_the_plain_way_does_what_the_typer_command_does(
    args: list[str], provision_exit: int, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("numpy\n")
    (tmp_path / "b.txt").write_text("torch\n")
    assert plain_options(args) is not None  # the plain way takes it
    plain = run(CONSOLE, args, tmp_path, provision_exit)
    typer = run(TYPER, args, tmp_path, provision_exit)
    assert plain == typer
    if provision_exit == 0 and args[-len(COMMAND) :] == COMMAND and plain.provision:
        assert plain.code == 0, plain.err
        assert plain.command == ["-v", "--prefix", "x"]  # the options after CMD are its own


def test_the_provision_is_auto_for_the_prefix_with_every_option_passed_on(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("numpy\n")
    (tmp_path / "b.txt").write_text("torch\n")
    ran = run(CONSOLE, CASES["every option"], tmp_path)
    assert ran.code == 0, ran.err
    assert ran.provision == [
        "auto", "--prefix", str(tmp_path / ".venv"), "--json", "--replay", "/h",
        "--lock-source", "/srv/locks", "--index-url", "http://127.0.0.1:1/simple",
        "--torch-index-url", "http://127.0.0.1:1/whl",
        "-r", str(tmp_path / "a.txt"), "-r", str(tmp_path / "b.txt"),
    ]  # fmt: skip


NOT_PLAIN = {
    "help": ["-h"],
    "help, long": ["--prefix", "env", "--help"],
    "quiet": ["-q", "--", "true"],
    "verbose": ["--verbose", "--", "true"],
    "an unknown option": ["--frobnicate", "--", "true"],
    "a short option with =": ["-r=a.txt", "--", "true"],
    "a value missing": ["--prefix"],
    "no command after --": ["--prefix", "env", "--"],
    "no command": ["--prefix", "env"],
    "nothing": [],
}


@pytest.mark.parametrize("args", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_else_is_left_to_the_typer_command(args: list[str]) -> None:
    assert plain_options(args) is None


def test_without_a_command_both_ways_say_so(tmp_path: Path) -> None:
    plain = run(CONSOLE, ["--provisioner", "SPY", "--"], tmp_path)
    assert plain == run(TYPER, ["--provisioner", "SPY", "--"], tmp_path)
    assert plain.code == 1 and "no command" in plain.err and plain.provision is None


@pytest.mark.parametrize("way_in", [CONSOLE, TYPER], ids=["plain", "typer"])
def test_a_json_error_to_a_closed_stdout_exits_1_quietly(way_in: list[str], tmp_path: Path) -> None:
    """The reader went away (`... --json | head -0`): the error cannot be written, and the
    command stops with 1 and no traceback, both ways in."""
    args = ["--json", "--provisioner", "SPY", "-r", "missing.txt", "--", *COMMAND]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        ran = run(way_in, args, tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert (ran.code, ran.err, ran.provision) == (1, "", None)
