"""Issue 9 against the index simulator: the index decides what exists, pip reads no wheels,
`--python` takes free-threaded versions and interpreters, and nightly/test follow the index."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.isolation import use_sim
from indexsim import Catalog, Hosted, IndexSim, Knobs, Site, WheelSpec, build_site, default_catalog
from indexsim.catalog import TEST_DOUBLE, torch_stub
from typer.testing import CliRunner

from torchenv.agent.cli.main import app
from torchenv.agent.host.source import HostFlags, load_host
from torchenv.agent.lock.pylock import read_pylock
from torchenv.agent.lock.resolvers.target import target_of

H100 = str(HOSTS / "h100-driver580")
CPU_VM = str(HOSTS / "cpu-cloud-vm")
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
TORCHENV = [sys.executable, "-m", "torchenv.agent"]
TORCH_CPU = "torch-2.9.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim: IndexSim) -> Path:
    use_sim(monkeypatch, tmp_path, sim)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sim(indexsim_site: Site) -> Iterator[IndexSim]:
    with IndexSim(indexsim_site, Knobs()) as server:
        yield server


@pytest.fixture
def project(sim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_uv()
    sim.reset_counters()
    return isolate(monkeypatch, tmp_path, sim)


# ---------------------------------------------------------------- 1: the index decides


def test_lock_takes_the_newest_release_the_index_holds_without_a_refresh(
    project: Path, sim: IndexSim
) -> None:
    """The catalog knows torch 2.15; the simulated index holds 2.9 at most."""
    code, out = invoke("lock", "torch", "torchvision", "--replay", H100)
    assert code == 0, out
    lock = read_pylock(project / "pylock.toml")
    torch = lock.package("torch")
    assert torch is not None and torch.version == "2.9.0+cu130"
    assert lock.tool_torchenv["torch"] == "2.9"
    skipped = lock.tool_torchenv["skipped"]
    assert f"torch 2.15 is not on {sim.torch_index_url}/cu130; 2.9.0+cu130 is" in skipped
    assert f"skipped: torch 2.15 is not on {sim.torch_index_url}/cu130" in out
    # one read of each page the choice needed; the lock's second look is a 304
    pages = sim.requests("/whl/*/torch/")
    assert len({r.path for r in pages}) <= 5
    assert all(r.status == 304 for r in pages[len({r.path for r in pages}) :])


def test_select_explains_what_the_index_lacks(project: Path, sim: IndexSim) -> None:
    code, out = invoke("select", "--explain", "--replay", H100)
    assert code == 0, out
    assert "chosen: torch 2.9 + cu130" in out
    assert f"torch 2.15 is not on {sim.torch_index_url}/cu130; 2.9.0+cu130 is" in out
    code, out = invoke("select", "--json", "--replay", H100)
    assert json.loads(out)["skipped"]


def test_select_offline_uses_what_was_read_and_says_how_old_it_is(
    project: Path, sim: IndexSim
) -> None:
    assert invoke("select", "--replay", H100)[0] == 0
    asked = len(sim.requests())
    code, out = invoke("select", "--replay", H100, "--offline")
    assert code == 0, out
    assert "torch 2.9 cu130" in out and re.search(r"as read \d+ s ago", out)
    assert len(sim.requests()) == asked  # offline: not one request


def test_offline_with_nothing_read_decides_from_the_catalog_and_says_so(
    project: Path, sim: IndexSim
) -> None:
    code, out = invoke("select", "--replay", H100, "--offline")
    assert code == 0, out
    assert "torch 2.15 cu130" in out
    assert "the choice rests on the catalog alone" in out
    assert sim.requests() == []


def test_catalog_refresh_reports_what_the_index_holds(project: Path) -> None:
    code, out = invoke("catalog", "refresh", "--backend", "cu126", "--backend", "cpu")
    assert code == 0, out
    assert "the index's newest torch is 2.9.0+" in out
    assert "2.15" not in out


def test_test_channel_takes_the_release_candidates_the_test_index_has(project: Path) -> None:
    """The catalog guesses 2.16 for the test channel; the test index has 2.10 candidates."""
    code, out = invoke("lock", "torch", "--replay", CPU_VM, "--channel", "test", "--python", PY)
    assert code == 0, out
    lock = read_pylock(project / "pylock.toml")
    assert lock.tool_torchenv["torch"] == "2.10"
    assert lock.package("torch").version.startswith("2.10.0")  # type: ignore[union-attr]


@pytest.mark.e2e
def test_auto_and_entrypoint_without_a_version_get_the_release_the_index_has(
    sim: IndexSim, tmp_path: Path
) -> None:
    env = {**os.environ, "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
           "TORCHENV_INDEX_URL": sim.pypi_url, "TORCHENV_CACHE_DIR": str(tmp_path / "c"),
           "TORCHENV_USER_CONFIG": str(tmp_path / "none.toml")}  # fmt: skip
    env.pop("TORCHENV_FAULT", None)
    auto = subprocess.run(
        [*TORCHENV, "auto", "torch", "--json", "--replay", CPU_VM, "--python", PY,
         "--prefix", str(tmp_path / "auto")],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert auto.returncode == 0, auto.stdout + auto.stderr
    result = json.loads(auto.stdout)
    assert (result["torch"], result["backend"]) == ("2.9.0+cpu", "cpu") and result["verify"]["ok"]
    assert any("2.15 is not on" in s for s in result["skipped"])
    code = "import torch; print(torch.__version__)"
    (tmp_path / "requirements.txt").write_text("torch\n")
    entry = subprocess.run(
        [*TORCHENV, "entrypoint", "--prefix", str(tmp_path / "entry"), "-r", "requirements.txt",
         "--auto-args", f"--replay {CPU_VM} --python {PY}", "--", "python", "-c", code],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert entry.returncode == 0, entry.stderr
    assert entry.stdout.strip() == "2.9.0+cpu"


# ---------------------------------------------------------------- 2: pip reads no wheel


@pytest.fixture(scope="module")
def padded_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSim]:
    """cp311 only, no PEP 658 files; the locked torch build and PyPI's numpy padded to
    realistic sizes (the CPU torch wheel is some 190 MB)."""
    catalog = default_catalog(pythons=("cp311",)).padded({"numpy": 4_000_000})

    def pad(hosted: Hosted) -> Hosted:
        wheel = hosted.wheel
        if wheel is not None and wheel.filename == TORCH_CPU:
            return replace(hosted, wheel=replace(wheel, padding=180_000_000))
        return hosted

    site = build_site(Catalog(tuple(pad(h) for h in catalog.files)), tmp_path_factory.mktemp("pad"))
    with IndexSim(site, Knobs(pep658=False, json_api=False)) as server:
        yield server


def test_pip_resolves_without_downloading_any_wheel(
    padded_sim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = isolate(monkeypatch, tmp_path, padded_sim)
    code, out = invoke(
        "lock", "torch==2.9.*", "torchvision", "numpy", "jinja2", "--resolver", "pip",
        "--os", "linux", "--arch", "x86_64", "--python", "3.11", "--backend", "cpu",
    )  # fmt: skip
    assert code == 0, out
    lock = read_pylock(project / "pylock.toml")
    assert {"numpy", "pillow", "markupsafe", "jinja2"} <= set(lock.names)
    assert lock.tool_torchenv["resolver"] == "pip"
    assert lock.package("torch").wheel.name == TORCH_CPU  # type: ignore[union-attr]
    served = {f.filename: f.size for f in padded_sim.site.files.values()}
    locked = sum(served[p.wheel.name or ""] for p in lock.packages)
    whole = [r for r in padded_sim.requests("*.whl") if r.method == "GET" and not r.range]
    assert whole == []  # every wheel's metadata came from range requests
    assert padded_sim.bytes_sent() < locked / 100


def test_uv_is_a_dependency_of_the_installed_package() -> None:
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    needed = {Requirement(r).name: Requirement(r) for r in requires("torchenv") or ()}
    assert "uv" in needed and needed["uv"].marker is None  # not an extra: always installed
    # 0.8.12: the first uv whose --python-platform takes aarch64-pc-windows-msvc (pyproject)
    assert needed["uv"].specifier.contains("0.8.12")
    assert not needed["uv"].specifier.contains("0.8.11")


# ---------------------------------------------------------------- 5: --python


def test_free_threaded_python_gets_t_abi_tags_and_a_release_that_publishes_them() -> None:
    host = load_host(flags=HostFlags(os="linux", arch="x86_64", python="3.13t"))
    assert host.python.free_threaded and host.python.minor == "3.13"
    assert host.python.abi_tags == ("cp313t", "none")
    tags = [str(t) for t in target_of(host).tags()]
    assert (
        "cp313-cp313t-manylinux_2_28_x86_64" in tags
        and "cp313-abi3-manylinux_2_28_x86_64" not in tags
    )
    code, out = invoke(  # no index reachable (conftest): the catalog decides
        "select", "--json", "--os", "linux", "--arch", "x86_64",
        "--python", "3.14t", "--driver", "580.95.05", "--gpu", "9.0",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["torch"] == "2.13"  # 2.14 and 2.15 publish no cp314t wheels


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "neither a Python version nor an interpreter"),
        ("3", "names no minor version"),
        ("{tmp}/notes.txt", "not a Python interpreter that runs here|neither"),
        ("{tmp}/fake-python", "is not a Python interpreter that runs here"),
    ],
)
def test_a_malformed_python_is_exit_1_with_a_hint(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("not a program\n")
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho not python\n")
    fake.chmod(0o755)
    value = value.format(tmp=tmp_path)
    code, out = invoke("select", "--os", "linux", "--arch", "x86_64", "--python", value)
    assert code == 1, out
    assert re.search(message, out) and "3.13t" in out  # the hint names the accepted forms
    assert "unexpected" not in out


def test_an_interpreter_path_is_probed_for_its_version_and_tags(tmp_path: Path) -> None:
    host = load_host(flags=HostFlags(python=sys.executable))
    assert host.python.minor == PY and host.python.executable
    assert host.python.interpreter_tag == f"cp{sys.version_info[0]}{sys.version_info[1]}"
    code, out = invoke("select", "--json", "--python", sys.executable)
    assert code == 0, out
    assert json.loads(out)["python"] == PY


# ---------------------------------------------------------------- nightly: only what it needs

NIGHTLY_DAYS = 60  # the nightly index keeps about 60 versions of each project


def _nightly_catalog() -> Catalog:
    files: list[Hosted] = []
    tag = "cp311-cp311-manylinux_2_28_x86_64"
    triton = "3.5.0+gitc3c476f1"
    for day in range(1, NIGHTLY_DAYS + 1):
        date = f"202611{day:02d}" if day <= 30 else f"202612{day - 30:02d}"
        torch = f"2.17.0.dev{date}+cu130"
        files.append(Hosted("pytorch", "nightly", "cu130", WheelSpec(
            "torch", torch, tag, requires_python=">=3.10", summary=TEST_DOUBLE.format(name="torch"),
            requires_dist=("filelock", f'pytorch-triton=={triton}; platform_system == "Linux"'),
            files=torch_stub(torch, "13.0", ["sm_90"]),
        ), pep658=False))  # fmt: skip
        if day != NIGHTLY_DAYS:  # the newest day has no torchvision yet
            vision = f"0.32.0.dev{date}+cu130"
            files.append(Hosted("pytorch", "nightly", "cu130", WheelSpec(
                "torchvision", vision, tag, requires_dist=(f"torch=={torch}",),
                summary=TEST_DOUBLE.format(name="torchvision"),
            ), pep658=False))  # fmt: skip
    files.append(Hosted("pytorch", "nightly", "cu130", WheelSpec(
        "pytorch-triton", triton, tag, summary=TEST_DOUBLE.format(name="pytorch-triton"),
    ), pep658=False))  # fmt: skip
    pypi = [h for h in default_catalog(pythons=("cp311",)).files if h.index == "pypi"]
    return Catalog((*files, *pypi))


@pytest.fixture(scope="module")
def nightly_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSim]:
    site = build_site(_nightly_catalog(), tmp_path_factory.mktemp("nightly-site"))
    with IndexSim(site, Knobs()) as server:
        yield server


def test_nightly_reads_only_the_pages_and_wheels_the_choice_needs(
    nightly_sim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_uv()
    project = isolate(monkeypatch, tmp_path, nightly_sim)
    code, out = invoke(
        "lock", "torch", "torchvision", "--channel", "nightly", "--os", "linux",
        "--arch", "x86_64", "--python", "3.11", "--driver", "580.95.05", "--gpu", "9.0",
    )  # fmt: skip
    assert code == 0, out
    lock = read_pylock(project / "pylock.toml")
    assert lock.tool_torchenv["torch"] == "2.17"  # the index's, not the catalog's guess
    # the newest torch has no torchvision yet: the day before is the newest complete pair
    assert lock.package("torch").version == "2.17.0.dev20261229+cu130"  # type: ignore[union-attr]
    assert lock.package("torchvision").version == "0.32.0.dev20261229+cu130"  # type: ignore[union-attr]
    triton = lock.package("pytorch-triton")
    assert triton is not None and "/whl/nightly/cu130/" in triton.wheel.url
    touched = {r.path for r in nightly_sim.requests("/whl/nightly/*.whl")}
    # metadata of the two newest torches and their torchvisions, and the wheels to hash
    assert len(touched) <= 6, sorted(touched)
    pages = {r.path for r in nightly_sim.requests("/whl/nightly/*/")}
    family = {f"/whl/nightly/cu130/{p}/" for p in ("torch", "torchvision", "pytorch-triton")}
    others = {f"/whl/nightly/{b}/torch/" for b in ("cu132", "cpu")}  # the next candidates
    assert family <= pages <= family | others
