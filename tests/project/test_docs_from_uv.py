"""docs/from-uv-and-pip.md: every torchenv command on the page runs, in the page's order.

The commands run as written, in one project directory, against the index simulator on
loopback; a command that works for a host (select, lock, auto, sync) is given the recorded
cpu-cloud-vm host unless it names its own target (--python-platform).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from indexsim import IndexSim, Knobs, build_site, default_catalog

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "from-uv-and-pip.md"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
HOST_COMMANDS = ("select", "lock", "auto", "sync")
TARGET = ("--python-platform", "--os", "--host-report")


def page_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", PAGE.read_text(), flags=re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.startswith("torchenv ")]


def table_commands() -> list[str]:
    """The torchenv commands named in the side-by-side table."""
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| ")]
    found = [m for row in rows for m in re.findall(r"`((?:[A-Z_]+=\S+ )?torchenv [^`]*)`", row)]
    return [re.sub(r"^[A-Z_]+=\S+ ", "", c) for c in found]


def test_the_page_lists_the_conventions_and_its_commands() -> None:
    commands = page_commands()
    assert len(commands) >= 12
    text = PAGE.read_text()
    for term in ("--torch-backend", "UV_TORCH_BACKEND", "--python-platform", "--dry-run",
                 "compute capability", "verify", "rollback", "--publish"):  # fmt: skip
        assert term in text, term
    # Every subcommand the table names is run by an example below it.
    ran = {c.split()[1] for c in commands}
    assert {c.split()[1] for c in table_commands()} <= ran


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    if words[1] in HOST_COMMANDS and not any(w in TARGET for w in words):
        words += ["--replay", str(HOSTS / "cpu-cloud-vm")]
        words += [] if "--python-version" in words else ["--python", PY]
    return [sys.executable, "-c", "from torchenv.agent.cli.main import main; main()", *words[1:]]


@pytest.mark.e2e
def test_every_command_on_the_page_runs(tmp_path: Path) -> None:
    need_uv()
    site = build_site(default_catalog(), tmp_path / "site")
    project = tmp_path / "work"
    (project / "nodes").mkdir(parents=True)
    (project / "requirements.in").write_text("torch\nnumpy\n")
    with IndexSim(site, Knobs()) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHENV_", "UV_"))}
        env.update(
            TORCHENV_TORCH_INDEX_URL=sim.torch_index_url, TORCHENV_INDEX_URL=sim.pypi_url,
            TORCHENV_CACHE_DIR=str(tmp_path / "cache"),
            TORCHENV_USER_CONFIG=str(tmp_path / "none.toml"),
            TORCHENV_SYSTEM_CONFIG=str(tmp_path / "none.toml"),
        )  # fmt: skip
        for node in ("h100-driver580", "cpu-cloud-vm"):  # each node's `torchenv probe --json`
            report = subprocess.run(
                [*argv("torchenv probe --json")[:3], "probe", "--json", "--replay",
                 str(HOSTS / node)], env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            (project / "nodes" / f"{node}.json").write_text(report.stdout)
        for command in page_commands():
            done = subprocess.run(argv(command), cwd=project, env=env, capture_output=True,
                                  text=True, check=False, timeout=300)  # fmt: skip
            assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (project / "pylock.toml").is_file() and (project / "pylock.linux.toml").is_file()
    index = json.loads((project / "locks" / "index.json").read_text())
    assert len(index["classes"]) == 2  # the two nodes are two hardware classes
    assert (project / ".venv" / "bin" / "python").exists()
