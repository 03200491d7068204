"""The installed `torchenv` command on Linux (scripts/torchenv, setup.py): pip and uv install
it from a wheel, a source tree or in editable mode; it runs every command, and the no-op it
answers imports torchenv's own modules and nothing else (pip's console scripts import `re`
first: half of Python's start-up).

Each installer writes into a fresh virtual environment whose dependencies come from this
interpreter's site-packages (a .pth line); the builds take setuptools from the machine's
wheels (pip's configuration, as tests/realmirror finds them) with no index at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
from helpers import ROOT
from helpers.locks import build_lock, plain_spec, torch_spec
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from realmirror import find_real_wheels

from torchenv.agent.cli import stamps
from torchenv.agent.host.source import load_host

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform != "linux", reason="setup.py: the launcher is Linux's command"),
]
PIP = [sys.executable, "-m", "pip"]
OFFLINE = ["--no-index", "--find-links"]  # then the directory of build-system wheels
UV = [str(Path(sys.executable).with_name("uv")), "pip"]
INSTALLERS = ("pip-wheel", "uv-wheel", "pip-editable", "uv-source")


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600,
                          **kwargs)  # type: ignore[call-overload]  # fmt: skip
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A copy of what the build reads (pyproject.toml, setup.py, MANIFEST.in), its wheel, and
    the directory of build-system wheels every build here takes (`--no-index`: no network)."""
    tmp = tmp_path_factory.mktemp("command")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tools = _build_tools(tmp / "tools", config["build-system"]["requires"])
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", config["project"]["readme"]):
        shutil.copy2(ROOT / name, src / name)
    for directory in ["scripts", *config["tool"]["setuptools"]["package-dir"].values()]:
        shutil.copytree(ROOT / directory, src / directory,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    _run(
        [*PIP, "wheel", "-q", "--no-deps", *OFFLINE, str(tools), "-w", str(tmp / "dist"), str(src)]
    )
    return src, next((tmp / "dist").glob("torchenv-*.whl")), tools


def _build_tools(into: Path, requires: list[str]) -> Path:
    """The newest local wheel (pip's configuration: tests/realmirror) for each requirement."""
    wheels = find_real_wheels().values()
    into.mkdir()
    for requirement in map(Requirement, requires):
        name = canonicalize_name(requirement.name)
        fits = [w for w in wheels if w.project == name and w.version in requirement.specifier]
        if not fits:
            pytest.skip(f"pip's configuration offers no local wheel for {requirement}")
        shutil.copy2(max(fits, key=lambda w: w.version).path, into)
    return into


def _install(installer: str, built: tuple[Path, Path, Path], venv: Path) -> Path:
    """A fresh environment with torchenv installed by `installer`; its `bin/torchenv`."""
    src, wheel, tools = built
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(venv / "bin" / "python")
    if installer == "pip-wheel":
        _run([*PIP, "--python", python, "install", "-q", "--no-deps", "--no-index", str(wheel)])
    elif installer == "uv-wheel":
        _run([*UV, "install", "-q", "--offline", "--no-deps", "--python", python, str(wheel)])
    elif installer == "pip-editable":
        _run([*PIP, "--python", python, "install", "-q", "--no-deps", *OFFLINE, str(tools),
              "-e", str(src)])  # fmt: skip
    else:
        _run([*UV, "install", "-q", "--offline", *OFFLINE, str(tools), "--no-deps",
              "--python", python, str(src)])  # fmt: skip
    return venv / "bin" / "torchenv"


def _commands(help_text: str) -> list[str]:
    """The command names `--help` lists (the indented rows under "Commands:")."""
    rows = help_text.split("\nCommands:\n")[1].split("\n\n", maxsplit=1)[0].splitlines()
    return [row.split()[0] for row in rows if row.startswith("  ") and row[2] != " "]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_the_installed_command_is_the_launcher_and_runs_the_cli(
    installer: str, built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    command = _install(installer, built, tmp_path / "venv")
    shebang = command.read_text().splitlines()[0]
    assert shebang.startswith(f"#!{tmp_path / 'venv' / 'bin' / 'python'}")
    assert (
        command.read_text().splitlines()[1:]
        == (ROOT / "scripts/torchenv").read_text().splitlines()[1:]
    )
    assert os.access(command, os.X_OK)
    listed = _commands(_run([str(command), "--help"]).stdout)
    assert {"auto", "select", "sync", "verify", "lock"} <= set(listed)
    if installer == "pip-wheel":  # every command parses its arguments through this launcher
        for name in listed:
            _run([str(command), name, "--help"])


def test_the_installed_no_op_imports_only_torchenv_modules(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    command = _install("uv-wheel", built, tmp_path / "venv")
    python = command.read_text().splitlines()[0][2:]  # as the kernel runs it: sys.executable
    lock = build_lock(tmp_path / "lockdir", [torch_spec(), plain_spec("filelock")],
                      host=load_host())  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TORCHENV_NO_FASTPATH"}
    env.update({"TORCHENV_CACHE_DIR": str(tmp_path / "cache"),
                "TORCHENV_USER_CONFIG": str(tmp_path / "user.toml")})  # fmt: skip
    argv = ["auto", "torch", "--json", "--lock", str(lock), "--prefix", str(tmp_path / "env")]
    assert (
        json.loads(_run([str(command), *argv], env=env, cwd=tmp_path).stdout)["action"] == "synced"
    )
    time.sleep(stamps.RACY_NS / 1e9 + 0.1)  # no stamp rests on mtimes that recent
    _run([str(command), *argv], env=env, cwd=tmp_path)  # the full no-op: it writes the stamp
    done = _run([python, "-X", "importtime", str(command), *argv], env=env, cwd=tmp_path)
    answer = json.loads(done.stdout)
    assert answer["action"] == "unchanged" and set(answer["stages"]) == {"check"}, answer
    floor = _run([python, "-X", "importtime", "-c", "pass"], env=env, cwd=tmp_path)
    extra = _imported(done.stderr) - _imported(floor.stderr)
    assert "torchenv.agent.cli.fastpath" in extra
    others = {m for m in extra if not m.startswith("torchenv")} - set(sys.builtin_module_names)
    assert others <= {"_sha256", "_sha2"}, others  # not re, not __future__, not typer


def test_an_sdist_made_off_linux_builds_the_launcher_on_linux(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """setup.py names the launcher only on Linux: an sdist made on Windows or macOS carries it
    anyway (MANIFEST.in), and the wheel pip builds from it on Linux installs it."""
    src, _, tools = built
    setuptools = tmp_path / "setuptools"
    _run([*PIP, "install", "-q", "--no-deps", "--no-index", "--target", str(setuptools),
          *map(str, tools.glob("*.whl"))])  # fmt: skip
    shutil.copytree(src, tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    env = {**os.environ, "PYTHONPATH": str(setuptools), "TORCHENV_BUILD_PLATFORM": "win32"}
    make = f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"
    _run([sys.executable, "-c", make], env=env, cwd=tmp_path / "src")
    sdist = next(tmp_path.glob("torchenv-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[-1] for name in archive.getnames()}
    assert {"scripts/torchenv", "setup.py", "README.md", "backends/data/cuda.json"} <= names
    assert "entry_points.txt" in {name.rsplit("/", 1)[-1] for name in names}  # made as win32
    _run([*PIP, "wheel", "-q", "--no-deps", *OFFLINE, str(tools), "-w", str(tmp_path / "dist"),
          str(sdist)])  # fmt: skip
    with zipfile.ZipFile(next((tmp_path / "dist").glob("torchenv-*.whl"))) as wheel:
        wheel_names = wheel.namelist()
    assert [name for name in wheel_names if name.endswith(".data/scripts/torchenv")]
    assert not [name for name in wheel_names if name.endswith("entry_points.txt")]


def _imported(importtime: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in importtime.splitlines()
            if line.startswith("import time:") and "imported package" not in line}  # fmt: skip
