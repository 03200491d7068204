"""uv's and pip's conventions on torchenv's command line, one invocation per row (issue 11).

Each row runs the real `torchenv` (a subprocess through `cli.main`, so exit codes are the
process's own) and checks what it did, not only that it exited 0.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from indexsim import IndexSim, Knobs, build_site, default_catalog

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
H100 = str(HOSTS / "h100-driver580")
CPU_VM = str(HOSTS / "cpu-cloud-vm")
COMMANDS = [
    ["probe"], ["config"], ["select"], ["catalog", "show"], ["catalog", "refresh"], ["lock"],
    ["auto"], ["sync"], ["verify"], ["rollback"], ["agent"], ["status"], ["entrypoint"],
]  # fmt: skip
INDEX_COMMANDS = [["select"], ["lock"], ["auto"], ["entrypoint"]]


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.out)  # type: ignore[no-any-return]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHENV_", "UV_"))}
    env.update(
        TORCHENV_USER_CONFIG=str(tmp / "none.toml"), TORCHENV_SYSTEM_CONFIG=str(tmp / "none.toml"),
        TORCHENV_CACHE_DIR=str(tmp / "cache"), TORCHENV_TORCH_INDEX_URL="http://127.0.0.1:9/whl",
        TORCHENV_INDEX_URL="http://127.0.0.1:9/simple",
    )  # fmt: skip
    env.update(extra)
    return env


def torchenv(args: list[str], cwd: Path, env: dict[str, str]) -> Done:
    argv = [sys.executable, "-c", "from torchenv.agent.cli.main import main; main()", *args]
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    return Done(done.returncode, done.stdout, done.stderr)


# ---------------------------------------------------------------- rows without an index


@dataclass(frozen=True)
class Row:
    name: str
    args: list[str]
    code: int
    check: Callable[[Done], object] = lambda _d: True
    env: dict[str, str] = field(default_factory=dict)


def backend_is(name: str) -> Callable[[Done], bool]:
    return lambda d: d.json()["backend"] == name


def platform_is(os_name: str, backend: str) -> Callable[[Done], bool]:
    return lambda d: d.json()["platform"].startswith(os_name) and d.json()["backend"] == backend


SELECT = ["select", "--offline", "--json"]
ROWS = [
    Row("--torch-backend cu126 selects cu126", [*SELECT, "--replay", H100, "--torch-backend",
        "cu126"], 0, backend_is("cu126")),
    Row("--backend is the same option", [*SELECT, "--replay", H100, "--backend", "cu126"], 0,
        backend_is("cu126")),
    Row("without it the H100 takes a newer CUDA", [*SELECT, "--replay", H100], 0,
        lambda d: d.json()["backend"].startswith("cu13")),
    Row("UV_TORCH_BACKEND is read", [*SELECT, "--replay", H100], 0, backend_is("cu126"),
        {"UV_TORCH_BACKEND": "cu126"}),
    Row("UV_TORCH_BACKEND is the source in config", ["config", "--json"], 0,
        lambda d: d.json()["backend"] == {"value": "cu126",
                                          "source": "environment (UV_TORCH_BACKEND)"},
        {"UV_TORCH_BACKEND": "cu126"}),
    Row("TORCHENV_TORCH_BACKEND wins over uv's", ["config", "--json"], 0,
        lambda d: d.json()["backend"] == {"value": "cpu",
                                          "source": "environment (TORCHENV_TORCH_BACKEND)"},
        {"UV_TORCH_BACKEND": "cu126", "TORCHENV_TORCH_BACKEND": "cpu"}),
    Row("--python-platform aarch64-apple-darwin: mps", [*SELECT, "--python-platform",
        "aarch64-apple-darwin", "--python-version", "3.12"], 0, platform_is("macos", "mps")),
    Row("--python-platform x86_64-apple-darwin: cpu", [*SELECT, "--python-platform",
        "x86_64-apple-darwin", "--python-version", "3.12"], 0,
        lambda d: d.json()["backend"] == "cpu" and "macos" in d.json()["platform"]),
    Row("--python-platform macos is aarch64-apple-darwin", [*SELECT, "--python-platform",
        "macos", "--python-version", "3.12"], 0, platform_is("macos", "mps")),
    Row("--python-platform x86_64-manylinux_2_28 with a GPU: CUDA", [*SELECT,
        "--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.12", "--driver",
        "580.95.05", "--gpu", "9.0"], 0,
        lambda d: d.json()["platform"] == "linux-x86_64" and d.json()["backend"].startswith("cu")),
    Row("--python-platform aarch64-unknown-linux-gnu", [*SELECT, "--python-platform",
        "aarch64-unknown-linux-gnu", "--python-version", "3.12"], 0,
        platform_is("linux-aarch64", "cpu")),
    Row("--python-platform windows", [*SELECT, "--python-platform", "windows",
        "--python-version", "3.12"], 0, platform_is("windows", "cpu")),
    Row("--python-platform and --os conflict: usage", [*SELECT, "--python-platform", "linux",
        "--os", "linux"], 2, lambda d: "--python-platform" in d.out),
    Row("an unknown --python-platform: usage", [*SELECT, "--python-platform",
        "sparc-sun-solaris"], 2, lambda d: "not one of uv's platforms" in d.out),
    Row("a uv platform without torch wheels: explained", [*SELECT, "--python-platform",
        "x86_64-unknown-linux-musl", "--python-version", "3.12"], 1,
        lambda d: d.json()["error"] == "host"),
    Row("--python and --python-version conflict: usage", [*SELECT, "--python", "3.12",
        "--python-version", "3.12"], 2),
    Row("--python-version takes no interpreter", [*SELECT, "--python-version",
        sys.executable], 2, lambda d: "not a Python version" in d.out),
    Row("--python takes an interpreter path, as uv", [*SELECT, "--python", sys.executable,
        "--os", "linux", "--arch", "x86_64"], 0, lambda d: d.json()["python"] == PY),
    Row("--python-version 3.13t: free-threaded", [*SELECT, "--python-version", "3.13t",
        "--python-platform", "linux"], 0, lambda d: d.json()["python"] == "3.13t"),
    Row("UV_CUDA_DRIVER_VERSION is an override in the report", ["probe", "--replay", H100,
        "--json"], 0, lambda d: d.json()["nvidia"]["driver_version"] == "570.86.15"
        and d.json()["overrides"] == {"UV_CUDA_DRIVER_VERSION": "570.86.15"},
        {"UV_CUDA_DRIVER_VERSION": "570.86.15"}),
    Row("TORCHENV_CUDA_DRIVER_VERSION wins over uv's", ["probe", "--replay", H100, "--json"],
        0, lambda d: d.json()["nvidia"]["driver_version"] == "575.51.03"
        and set(d.json()["overrides"]) == {"UV_CUDA_DRIVER_VERSION",
                                           "TORCHENV_CUDA_DRIVER_VERSION"},
        {"UV_CUDA_DRIVER_VERSION": "570.86.15", "TORCHENV_CUDA_DRIVER_VERSION": "575.51.03"}),
    Row("UV_AMD_GPU_ARCHITECTURE gives the gfx target", ["probe", "--replay", CPU_VM,
        "--json"], 0, lambda d: [g["gfx"] for g in d.json()["amd"]["gpus"]] == ["gfx942"]
        and "UV_AMD_GPU_ARCHITECTURE" in d.json()["overrides"],
        {"UV_AMD_GPU_ARCHITECTURE": "gfx942"}),
    Row("an unknown option: usage, 2", ["select", "--no-such-option"], 2,
        lambda d: "No such option" in d.err),
    Row("an input that cannot be satisfied: 1", ["select", "--replay", "/nonexistent"], 1,
        lambda d: d.err.startswith("torchenv: cannot replay")),
    Row("lock -o refuses a name PEP 751 does not allow: usage", ["lock", "-o", "locked.toml",
        "--python-platform", "linux", "--python-version", "3.12"], 2,
        lambda d: "pylock.toml or pylock.NAME.toml" in d.err),
    Row("auto --lock takes PEP 751 names too: usage", ["auto", "--lock", "torch.lock",
        "--replay", CPU_VM, "--dry-run"], 2,
        lambda d: d.err.startswith("torchenv: --lock torch.lock")),
    Row("lock -o into a directory that is not there: usage, before any work", ["lock", "-o",
        "nodir/pylock.toml", "--python-platform", "linux", "--python-version", "3.12"], 2,
        lambda d: "there is no directory nodir" in d.err),
    Row("lock -o is looked at before the host is read", ["lock", "-o", "nodir/pylock.toml",
        "--replay", "no-such-host"], 2, lambda d: "there is no directory nodir" in d.err),
    Row("auto --lock into a directory that is not there: usage", ["auto", "--lock",
        "nodir/pylock.toml", "--replay", CPU_VM, "--dry-run"], 2,
        lambda d: d.err.startswith("torchenv: --lock nodir/pylock.toml: there is no directory")),
    Row("entrypoint -r with a requirement, not a file: usage", ["entrypoint", "-r", "numpy",
        "--", "true"], 2, lambda d: "-r names a requirements file" in d.err),
    Row("the provision's unexpected failure is the entrypoint's 3", ["entrypoint",
        "--provisioner", f"{sys.executable} -c 'import sys; sys.exit(7)'", "--", "true"], 3),
    Row("the provision's explained failure is the entrypoint's 1", ["entrypoint",
        "--provisioner", f"{sys.executable} -c 'import sys; sys.exit(1)'", "--", "true"], 1),
    Row("--help names the exit codes", ["-h"], 0,
        lambda d: "2 usage error" in " ".join(d.out.split()) and "130 interrupted" in d.out),
    Row("shell completion is on", ["--show-completion", "bash"], 0,
        lambda d: "_TORCHENV_COMPLETE" in d.out),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_convention(row: Row, tmp_path: Path) -> None:
    done = torchenv(row.args, tmp_path, clean_env(tmp_path, **row.env))
    assert done.code == row.code, (done.out, done.err)
    assert row.check(done), (done.out, done.err)


def test_lock_o_naming_a_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "pylock.toml").mkdir()
    args = ["lock", "-o", "pylock.toml", "--python-platform", "linux", "--python-version", "3.12"]
    done = torchenv(args, tmp_path, clean_env(tmp_path))
    assert done.code == 2, (done.out, done.err)
    assert "pylock.toml is a directory" in done.err and "pylock.toml/pylock.toml" in done.err


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_dash_h_prints_each_commands_usage_with_q_and_v(command: list[str], tmp_path: Path) -> None:
    done = torchenv([*command, "-h"], tmp_path, clean_env(tmp_path))
    assert done.code == 0, done.err
    assert done.out.startswith(f"Usage: torchenv {' '.join(command)} ")
    assert "-q, --quiet" in done.out and "-v, --verbose" in done.out


@pytest.mark.parametrize("command", INDEX_COMMANDS, ids=" ".join)
def test_every_command_that_reads_an_index_takes_both_urls(
    command: list[str], tmp_path: Path
) -> None:
    done = torchenv([*command, "-h"], tmp_path, clean_env(tmp_path))
    text = " ".join(done.out.split())
    assert "--index-url URL The index for everything but the torch family" in text
    assert "--torch-index-url URL The base of the PyTorch index" in text


@pytest.mark.parametrize("way_in", ["torchenv.agent.cli.main", "torchenv.agent.cli.entry"])
def test_ctrl_c_is_130(tmp_path: Path, way_in: str) -> None:
    """SIGINT while the entrypoint waits for its provision: 130, and the command never runs
    (through the typer command, and through the console script's plain entrypoint)."""
    marker = tmp_path / "ran"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)'"
    argv = [sys.executable, "-c", f"from {way_in} import main; main()", "entrypoint",
            "--provisioner", sleeper, "--", "touch", str(marker)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=tmp_path, env=clean_env(tmp_path), stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _has_child(proc.pid):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and not marker.exists()


def _has_child(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


# ---------------------------------------------------------------- rows against an index


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSim]:
    site = build_site(default_catalog(), tmp_path_factory.mktemp("conventions-site"))
    with IndexSim(site, Knobs()) as server:
        yield server


def served(tmp: Path, sim: IndexSim, **extra: str) -> dict[str, str]:
    """No index in the environment: the command line names both."""
    env = clean_env(tmp, **extra)
    env.pop("TORCHENV_TORCH_INDEX_URL")
    env.pop("TORCHENV_INDEX_URL")
    return env


def urls(sim: IndexSim) -> list[str]:
    return ["--torch-index-url", sim.torch_index_url, "--index-url", sim.pypi_url]


def test_select_reads_the_index_the_command_line_names(tmp_path: Path, sim: IndexSim) -> None:
    asked = sim.count("*/cpu/torch/*")
    done = torchenv(["select", "--replay", CPU_VM, "--python", PY, "--json", *urls(sim)],
                    tmp_path, served(tmp_path, sim))  # fmt: skip
    assert done.code == 0, done.err
    assert done.json()["index_url"] == f"{sim.torch_index_url}/cpu"
    assert sim.count("*/cpu/torch/*") > asked  # the torch page was read from that index


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: what a dry run must leave alone."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.e2e
def test_lock_r_file_verbosity_and_named_target(tmp_path: Path, sim: IndexSim) -> None:
    need_uv()
    (tmp_path / "reqs.txt").write_text("# the project\nnumpy\n")
    base = ["lock", "-r", "reqs.txt", "--replay", CPU_VM, "--python", PY, *urls(sim)]
    env = served(tmp_path, sim)
    verbose = torchenv([*base, "-v", "-o", "pylock.v.toml"], tmp_path, env)
    assert verbose.code == 0, verbose.err
    assert any(line.startswith("lock ") for line in verbose.err.splitlines()), verbose.err
    quiet = torchenv([*base, "-q", "-o", "pylock.q.toml"], tmp_path, env)
    assert quiet.code == 0 and not any(line.startswith("lock ") for line in quiet.err.splitlines())
    from torchenv.agent.lock.pylock import read_pylock

    lock = read_pylock(tmp_path / "pylock.v.toml")
    assert {p.name for p in lock.packages} >= {"torch", "numpy"}  # numpy from the -r file
    table = lock.tool_torchenv
    assert table["torch-index-url"] == f"{sim.torch_index_url}/cpu"
    assert table["index-url"] == sim.pypi_url
    python = table["target"]["python"]
    assert python == {"implementation": "cpython", "version": PY, "free-threaded": False}
    assert set(table["target"]["nvidia"]) >= {"state", "compute-capabilities", "tegra"}


@pytest.mark.e2e
def test_dry_run_changes_nothing_then_auto_does(tmp_path: Path, sim: IndexSim) -> None:
    need_uv()
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["torch", "numpy"]\n'
    )
    env = served(tmp_path, sim)
    host = ["--replay", CPU_VM, "--python", PY, *urls(sim)]
    before = snapshot(project)
    plan = torchenv(["auto", "--dry-run", "--json", *host], project, env)
    assert plan.code == 0, plan.err
    assert snapshot(project) == before  # no .venv, no pylock.toml, nothing touched
    result = plan.json()
    assert result["dry_run"] and result["action"] == "sync" and result["lock"] == "new"
    assert {p["name"] for p in result["packages"]} >= {"torch", "numpy"}
    assert "+ numpy" in " ".join(result["changes"])

    built = torchenv(["auto", "--json", *host], project, env)
    assert built.code == 0, built.err
    assert built.json()["torch"] == result["torch"]  # the dry run said what auto did
    after_auto = snapshot(project)
    again = torchenv(["auto", "--dry-run", *host], project, env)
    assert again.code == 0 and "nothing to do" in again.out
    assert snapshot(project) == after_auto

    prefix = tmp_path / "other"
    sync = torchenv(["sync", "pylock.toml", "--dry-run", "--prefix", str(prefix), "--replay",
                     CPU_VM, "--python", PY], project, env)  # fmt: skip
    assert sync.code == 0, sync.err
    assert "would build a new environment" in sync.out and "install  torch" in sync.out
    assert not prefix.exists() and not Path(f"{prefix}.torchenv").exists()
    assert snapshot(project) == after_auto


# ---------------------------------------------------------------- progress


def test_progress_is_quiet_with_json_q_or_no_terminal_and_v_shows_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchenv.agent.cli import outcome
    from torchenv.agent.cli.console import ConsoleReporter, make_reporter

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    table = [(0, False, "Reporter"), (1, False, "ConsoleReporter"), (1, True, "Reporter"),
             (-1, False, "Reporter")]  # fmt: skip
    for verbosity, as_json, kind in table:
        monkeypatch.setattr(outcome, "verbosity", verbosity)
        reporter = make_reporter(as_json)
        assert type(reporter).__name__ == kind, (verbosity, as_json)
        if isinstance(reporter, ConsoleReporter):
            assert not reporter.bars  # -v without a terminal: lines, no bars
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(outcome, "verbosity", -1)
    assert type(make_reporter(False)).__name__ == "Reporter"  # -q on a terminal too


def test_the_install_step_shows_a_spinner_with_its_time_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from torchenv.agent.cli.console import ConsoleReporter

    reporter = ConsoleReporter(bars=True)
    buffer = io.StringIO()
    reporter.console = Console(file=buffer, force_terminal=True, width=100)
    reporter.stage_started("install", "3 packages with uv")
    reporter.stage_finished("install", 1.5)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())  # no colours
    assert "install 3 packages with uv" in shown
    assert "0:00:0" in shown  # the spinner's elapsed-time column was drawn
    assert "install done in 1.50 s" in shown
    plain = ConsoleReporter(bars=False)
    plain.console = Console(file=(quiet := io.StringIO()), force_terminal=True, width=100)
    plain.stage_started("install", "3 packages with uv")
    plain.stage_finished("install", 1.5)
    plain_text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", quiet.getvalue())
    assert "0:00:0" not in plain_text and "install done in 1.50 s" in plain_text


def test_entrypoint_passes_its_index_urls_and_r_files_to_the_provision(tmp_path: Path) -> None:
    (tmp_path / "reqs.txt").write_text("numpy\n")
    record = tmp_path / "argv.json"
    script = tmp_path / "spy.py"  # a provisioner that writes down how it was called
    script.write_text(f"import json, sys\nopen({str(record)!r}, 'w').write(json.dumps(sys.argv))\n")
    spy = f"{sys.executable} {script}"
    done = torchenv(["entrypoint", "--provisioner", spy, "-r", "reqs.txt", "--index-url",
                     "http://127.0.0.1:1/simple", "--torch-index-url", "http://127.0.0.1:1/whl",
                     "--", "true"], tmp_path, clean_env(tmp_path))  # fmt: skip
    assert done.code == 0, done.err
    args = json.loads(record.read_text())[1:]  # after the script's name
    assert args[0] == "auto" and "--json" in args
    pairs = dict(itertools.pairwise(args))
    assert pairs["--index-url"] == "http://127.0.0.1:1/simple"
    assert pairs["--torch-index-url"] == "http://127.0.0.1:1/whl"
    assert pairs["-r"] == str(tmp_path / "reqs.txt")  # the file, made absolute
