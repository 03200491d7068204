"""Each command imports only what it uses: the modules a command line loaded, read at its exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.isolation import use_sim
from helpers.locks import build_lock, plain_spec, torch_spec
from indexsim import IndexSim

from torchenv.agent.cli.main import COMMAND_MODULES
from torchenv.agent.host.source import load_host

SELECT = ["select", "--json", "--os", "linux", "--arch", "x86_64", "--python", "3.11",
          "--driver", "580.95.05", "--gpu", "9.0"]  # fmt: skip

# Libraries and rooms no select whose answer is at hand needs (no request, no lock, no venv).
NOT_FOR_SELECT = ("httpx", "h11", "h2", "ssl", "socket", "psutil", "pynvml", "cpuinfo", "rich",
                  "packaging", "tomli_w", "concurrent", "torchenv.agent.fleet",
                  "torchenv.agent.lock", "torchenv.agent.env", "torchenv.agent.verify",
                  "torchenv.agent.daemon", "torchenv.agent.index.client")  # fmt: skip

# What a lock from an index with metadata files (PEP 658) does without: no environment, no
# wheel read through ranges, no resolver but uv, no fleet, no verifier, no daemon.
NOT_FOR_LOCK = ("psutil", "pynvml", "cpuinfo", "rich", "torchenv.agent.env",
                "torchenv.agent.index.ranges", "torchenv.agent.index.zipmeta",
                "torchenv.agent.lock.resolvers.pip", "torchenv.agent.lock.resolvers.metaproxy",
                "torchenv.agent.fleet", "torchenv.agent.verify",
                "torchenv.agent.daemon")  # fmt: skip

# What no help text needs: only typer and the commands' own modules.
NOT_FOR_HELP = (*NOT_FOR_SELECT, "torchenv.agent.pipeline", "torchenv.backends.select",
                "torchenv.probes.report", "platformdirs")  # fmt: skip

# The entrypoint's own process only runs the provision (`auto`) and becomes the command.
NOT_FOR_ENTRYPOINT = ("asyncio", "httpx", "psutil", "rich", "packaging", "torchenv.agent.fleet",
                      "torchenv.agent.lock", "torchenv.agent.env", "torchenv.agent.daemon.config",
                      "torchenv.agent.daemon.loop", "torchenv.probes.report")  # fmt: skip

# Run the command line as the console script does, then write the modules it loaded (where
# it would become another program, at that point).
RUN = """
import atexit, json, os, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
os.execvpe = lambda *args: sys.exit(0)
sys.argv[0] = "torchenv"
from torchenv.agent.cli.entry import main
main()
"""


@pytest.fixture
def env(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.setenv("TORCHENV_NO_FASTPATH", "1")  # the answer computed, not the kept one
    monkeypatch.chdir(tmp_path)
    return tmp_path


def loaded(tmp_path: Path, *argv: str, exit_code: int = 0) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", RUN, str(out), *argv], capture_output=True,
                          text=True, check=False, timeout=120, env=dict(os.environ))  # fmt: skip
    assert done.returncode == exit_code, done.stdout + done.stderr
    return set(json.loads(out.read_text()))


def among(modules: set[str], names: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == n or m.startswith(n + ".") for n in names)}


def test_a_select_whose_pages_are_fresh_imports_no_client_lock_or_probe_library(env: Path) -> None:
    first = loaded(env, *SELECT)  # reads the index pages and keeps them
    assert "httpx" in first  # the names below are real module names: the check can fail
    assert among(loaded(env, *SELECT), NOT_FOR_SELECT) == set()


def test_a_plain_select_for_a_recorded_host_imports_no_typer_click_or_client(env: Path) -> None:
    select = ("select", "--json", "--replay", str(HOSTS / "h100-driver580"))
    first = loaded(env, *select)  # reads the index pages and keeps them
    assert {"torchenv.agent.cli.select_run", "httpx"} <= first  # real names: the check can fail
    assert "typer" in loaded(env, *select, "-h")  # left to the typer command
    assert among(loaded(env, *select, "-q"), ("typer", "click", *NOT_FOR_SELECT)) == set()


def test_a_lock_from_an_index_with_metadata_files_imports_no_env_zip_reader_or_daemon(
    env: Path,
) -> None:
    modules = loaded(env, "lock", "torch", "--backend", "cu126", *SELECT[2:], "-o", "pylock.toml")
    assert (env / "pylock.toml").is_file()
    assert "torchenv.agent.lock.resolvers.uv" in modules  # it locked: the check can fail
    assert among(modules, NOT_FOR_LOCK) == set()


def test_a_plain_lock_imports_no_typer_or_click(env: Path) -> None:
    lock = ("lock", "torch", "--backend", "cu126", *SELECT[2:], "-o", "pylock.toml")
    assert "typer" in loaded(env, *lock, "-h")  # left to the typer command: the check can fail
    modules = loaded(env, *lock, "-q")
    assert "torchenv.agent.cli.lock_run" in modules  # it locked
    assert among(modules, ("typer", "click", *NOT_FOR_LOCK)) == set()


@pytest.mark.parametrize("command", ["sync", "auto"])
def test_a_plain_sync_or_auto_imports_no_typer_or_click(env: Path, command: str) -> None:
    lock = build_lock(env / "lockdir", [torch_spec(), plain_spec("filelock")], host=load_host())
    given = [str(lock)] if command == "sync" else ["torch", "--lock", str(lock)]
    argv = (command, *given, "--prefix", str(env / "venv"))
    assert "typer" in loaded(env, *argv, "-h")  # left to the typer command: the check can fail
    modules = loaded(env, *argv, "-v")
    assert "torchenv.agent.cli.env_run" in modules
    assert (env / "venv").is_symlink()  # it synced
    assert among(modules, ("typer", "click")) == set()


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_a_command_s_help_imports_its_own_module_and_no_library(env: Path, command: str) -> None:
    argv = [command, "--help"] if command != "catalog" else ["catalog", "show", "--help"]
    modules = loaded(env, *argv)
    own = f"torchenv.agent.{COMMAND_MODULES[command]}"
    others = {f"torchenv.agent.{m}" for m in COMMAND_MODULES.values()} - {own}
    assert own in modules
    assert among(modules, (*NOT_FOR_HELP, *others)) == set()


def test_the_command_list_imports_every_command_module_and_no_library(env: Path) -> None:
    modules = loaded(env, "-h")
    assert {f"torchenv.agent.{m}" for m in COMMAND_MODULES.values()} <= modules
    assert among(modules, NOT_FOR_HELP) == set()


def test_the_entrypoint_runs_its_provision_without_typer_or_the_daemon_s_event_loop(
    env: Path,
) -> None:
    modules = loaded(env, "entrypoint", "--provisioner", "true", "--", "true")
    assert "torchenv.agent.daemon.provision" in modules
    assert among(modules, ("typer", *NOT_FOR_ENTRYPOINT)) == set()
    failed = loaded(env, "entrypoint", "--provisioner", "false", "--", "true", exit_code=1)
    assert among(failed, ("typer", *NOT_FOR_ENTRYPOINT)) == set()  # said without typer too


# What a sync has loaded when it takes the prefix lock and starts the new environment
# (agent/env/early.py): the host probe's modules load after that, while uv works.
UNTIL_THE_BUILD_STARTS = """
import json, sys
from torchenv.agent.cli import env_run, hostflags
from torchenv.agent.base.options import ProbeOptions
from torchenv.agent.env import early
from torchenv.agent.pipeline import commands
settings = env_run.settings_from(prefix=None)
source = hostflags.host_source(replay=None, host_report=None, python=None, python_version=None)
before = sorted(sys.modules)
source.load(ProbeOptions.from_settings(settings))
print(json.dumps([before, sorted(sys.modules)]))
"""


def test_a_sync_starts_its_environment_before_the_probe_s_modules_load(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", UNTIL_THE_BUILD_STARTS], capture_output=True,
                          text=True, check=True, timeout=120, cwd=tmp_path)  # fmt: skip
    before, after = (set(m) for m in json.loads(done.stdout))
    probe = ("torchenv.probes.report", "torchenv.probes.system", "torchenv.agent.lock",
             "packaging", "psutil", "typer")  # fmt: skip
    assert "torchenv.probes.report" in after  # the probe loaded it: the check can fail
    assert among(before, probe) == set()


# The order in which the command asks for index pages ahead and loads the lock's code.
PAGES_THEN_CODE = """
import atexit, json, sys
out = sys.argv.pop(1)
order = []
atexit.register(lambda: open(out, "w").write(json.dumps(order)))
def hook(event, args):
    if event == "import" and args[0].startswith("torchenv.agent.lock.") and args[0] not in order:
        order.append(args[0])
sys.addaudithook(hook)
from torchenv.agent.index.client import IndexClient
real = IndexClient.read_ahead
def read_ahead(self, index_url, projects):
    order.append("read ahead " + ",".join(projects))
    return real(self, index_url, projects)
IndexClient.read_ahead = read_ahead
sys.argv[0] = "torchenv"
from torchenv.agent.cli.entry import main
main()
"""


def test_a_lock_asks_for_the_selection_s_pages_before_its_own_code_loads(env: Path) -> None:
    """The lock's code (the family, the locker, the lock file) loads while the index answers
    the selection's first requests, not before they are sent; the kept answer's inputs
    (which name that code) are found without loading it."""
    lock = ("lock", "torch", *SELECT[2:], "-o", "pylock.toml", "-q")
    out = env / "order.json"
    kept = {k: v for k, v in os.environ.items() if k != "TORCHENV_NO_FASTPATH"}  # as users run it
    done = subprocess.run([sys.executable, "-c", PAGES_THEN_CODE, str(out), *lock], env=kept,
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (env / "pylock.toml").is_file()
    order = json.loads(out.read_text())
    first = order.index("read ahead torch")  # the selection's pages: the check can fail
    lock_code = ["torchenv.agent.lock.build", "torchenv.agent.lock.family",
                 "torchenv.agent.lock.locker", "torchenv.agent.lock.pylock"]  # fmt: skip
    assert all(name in order[first:] for name in lock_code), order
