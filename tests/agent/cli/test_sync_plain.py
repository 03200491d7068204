"""A plainly spelled `sync` runs without typer, and does what the typer command does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.locks import build_lock, cpu_host, plain_spec, torch_spec
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

from torchenv.agent.cli import env_run, sync_plain
from torchenv.agent.host.source import load_host

H100 = str(HOSTS / "h100-driver580")


def passes(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return typer_passes("sync", env_run, argv, monkeypatch, run="run_sync")


def test_the_plain_way_reads_each_of_sync_s_options_as_typer_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Derived from typer's sync: an option added there and not here fails this test."""
    params = command("sync").params
    assert {p.name for p in params} > {"as_json", "lock", "prefix", "dry_run"}  # real names
    for param in params:
        names = {*param.opts, *param.secondary_opts}
        if param.param_type_name == "argument":
            argvs = [["pylock.toml"], ["--json", "pylock.gpu.toml"], [""]]
        elif names & LEFT_TO_TYPER:
            assert names <= LEFT_TO_TYPER, names
            assert all(sync_plain.plain_options(["l", *a]) is None for a in spellings(param))
            continue
        else:
            kinds = {c.__name__ for c in type(param.type).__mro__}
            assert param.count or kinds & KNOWN_TYPES, (names, param.type)  # plain_options reads it
            argvs = [["pylock.toml", *a] for a in spellings(param)]
        for argv in argvs:
            assert sync_plain.plain_options(argv) == passes(argv, monkeypatch), argv


TOGETHER = {
    "a value that looks like an option": ["--prefix", "--json", "l.toml", "--python", "-x"],
    "the lock between options": ["--force", "l.toml", "--dry-run", "--prefix=a=b"],
    "a recording": ["l.toml", "--replay", H100, "--python-version", "3.12"],
}


@pytest.mark.parametrize("argv", TOGETHER.values(), ids=TOGETHER.keys())
def test_options_together_are_read_as_typer_reads_them(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync_plain.plain_options(argv) == passes(argv, monkeypatch)


NOT_PLAIN = {
    "no lock": ["--json"],
    "two locks": ["a.toml", "b.toml"],
    "help": ["l.toml", "--help"],
    "verbose given a value": ["--verbose=1", "l.toml"],
    "an unknown option": ["l.toml", "--frobnicate"],
    "an abbreviation": ["l.toml", "--dry"],
    "a flag given a value": ["l.toml", "--force=1"],
    "a value missing": ["l.toml", "--prefix"],
    "after --": ["--", "l.toml"],
}


@pytest.mark.parametrize("argv", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_else_is_left_to_the_typer_command(argv: list[str]) -> None:
    assert sync_plain.plain_options(argv) is None


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_uv()
    for key in list(os.environ):
        if key.startswith("TORCHENV_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TORCHENV_USER_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TORCHENV_NO_FASTPATH", "1")
    monkeypatch.chdir(tmp_path)
    specs = [torch_spec(), plain_spec("filelock")]
    build_lock(tmp_path / "here", specs, host=load_host())
    build_lock(tmp_path / "arm", specs, host=cpu_host(arch="aarch64"))
    return tmp_path


def ran(way_in: list[str], argv: list[str], cwd: Path) -> tuple[object, ...]:
    """A sync's exit code, stdout and stderr (ids and seconds masked), and what it installed
    into `env` (each way from nothing: no environment, no cache; `linked` a link of the user's)."""
    for made in ("env", "env.torchenv", "linked", "linked.torchenv", "cache"):
        path = cwd / made
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    (cwd / "unmanaged").mkdir(exist_ok=True)
    (cwd / "unmanaged" / "mine.txt").write_text("mine\n")
    (cwd / "linked").symlink_to(cwd / "unmanaged")
    environ = {**os.environ, "TORCHENV_CACHE_DIR": str(cwd / "cache")}
    done = subprocess.run([*way_in, "sync", *argv], capture_output=True, text=True, check=False,
                          timeout=300, env=environ)  # fmt: skip
    site = sorted(p.name for p in cwd.glob("env/lib/python*/site-packages/*.dist-info"))
    return (done.returncode, masked(done.stdout), masked(done.stderr),
            (cwd / "env").is_symlink(), site)  # fmt: skip


LOCK = "here/pylock.toml"
BOTH_WAYS = {
    "text": [LOCK, "--prefix", "env"],
    "json": ["--json", LOCK, "--prefix=env"],
    "dry run": [LOCK, "--prefix", "env", "--dry-run"],
    "dry run, json": [LOCK, "--prefix", "env", "--dry-run", "--json"],
    "a lock for another target": ["arm/pylock.toml", "--prefix", "env"],
    "a lock for another target, json": ["arm/pylock.toml", "--prefix", "env", "--json"],
    "forced": ["arm/pylock.toml", "--prefix", "env", "--force"],
    "an unmanaged prefix": [LOCK, "--prefix", "unmanaged"],
    "an unmanaged prefix, forced": [LOCK, "--prefix", "unmanaged", "--force", "--json"],
    "a link of the user's": [LOCK, "--prefix", "linked"],
    "a link of the user's, forced": [LOCK, "--prefix", "linked", "--force"],
    "a recorded host": [LOCK, "--prefix", "env", "--replay", H100],
    "a missing lock": ["nothing.toml", "--prefix", "env"],
    "a missing lock, json": ["nothing.toml", "--prefix", "env", "--json"],
    "a bad value": [LOCK, "--prefix", "env", "--python-version", "x.y"],
    "two names for one fact": [LOCK, "--python", "3.11", "--python-version", "3.11"],
    "quiet": ["-qq", LOCK, "--prefix", "env"],
    "verbose": [LOCK, "--prefix", "env", "--verbose"],
    "left to typer: no lock": ["--prefix", "env"],
    "left to typer: an unknown option": [LOCK, "--frobnicate"],
    "left to typer: help": ["--help"],
}  # fmt: skip


@pytest.mark.parametrize("argv", BOTH_WAYS.values(), ids=BOTH_WAYS.keys())
def test_the_plain_way_prints_exits_and_installs_as_the_typer_command_does(
    env: Path, argv: list[str]
) -> None:
    plain = ran(CONSOLE, argv, env)
    assert plain == ran(TYPER, argv, env)
    assert plain[1] or plain[2]  # it said something: the comparison can fail


def test_both_ways_install_the_lock_s_packages(env: Path) -> None:
    """The effect compared above is a real one: the packages the lock names."""
    for way_in in (CONSOLE, TYPER):
        code, *_, linked, site = ran(way_in, [LOCK, "--prefix", "env"], env)
        assert (code, linked) == (0, True)
        assert [name.split("-")[0] for name in site] == ["filelock", "torch"]
