"""`torchenv auto` end to end against the loopback index simulator, and with a real torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from helpers import HOSTS
from helpers.locks import PY
from indexsim import Catalog, Hosted, IndexSim, Knobs, Site, WheelSpec, build_site
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from torchenv.agent.base.indexconfig import read_pip_config
from torchenv.agent.env import venv
from torchenv.agent.lock.pylock import read_pylock

pytestmark = pytest.mark.e2e

TORCHENV = [sys.executable, "-m", "torchenv.agent"]


def auto(args: list[str], cwd: Path, sim: IndexSim, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
        "TORCHENV_INDEX_URL": sim.pypi_url,
        "TORCHENV_CACHE_DIR": str(cwd / "cache"),
        "TORCHENV_USER_CONFIG": str(cwd / "no-config.toml"),
        **env,
    }
    full.pop("TORCHENV_FAULT", None)
    return subprocess.run(
        [*TORCHENV, "auto", "--json", *args], cwd=cwd, env=full, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sim(indexsim_site: Site) -> Iterator[IndexSim]:
    with IndexSim(indexsim_site, Knobs()) as server:
        yield server


def stand_in_build(prefix: Path) -> dict[str, object]:
    code = (
        "import json, torch; "
        "print(json.dumps({'v': torch.__version__, 'cuda': torch.version.cuda}))"
    )
    out = subprocess.run([str(venv.python_in(prefix)), "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_h100_and_cpu_hosts_get_different_correct_environments(
    tmp_path: Path, sim: IndexSim
) -> None:
    results = {}
    for host in ("h100-driver580", "cpu-cloud-vm"):
        prefix = tmp_path / host / ".venv"
        args = ["torch==2.9.*", "--replay", str(HOSTS / host), "--python", PY,
                "--prefix", str(prefix)]  # fmt: skip
        done = auto(args, tmp_path, sim)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        lock = read_pylock(Path(result["lock"]))
        assert lock.tool_torchenv["target"]["os"] == "linux"
        assert result["verify"]["ok"]
        results[host] = (result, lock, stand_in_build(prefix))

    gpu, gpu_lock, gpu_build = results["h100-driver580"]
    cpu, cpu_lock, cpu_build = results["cpu-cloud-vm"]
    assert gpu["backend"].startswith("cu") and cpu["backend"] == "cpu"
    assert gpu_build["cuda"] is not None and str(gpu_build["v"]).endswith("+" + gpu["backend"])
    assert cpu_build == {"v": "2.9.0+cpu", "cuda": None}
    assert gpu_lock.tool_torchenv["fingerprint"] != cpu_lock.tool_torchenv["fingerprint"]
    checks = {c["name"]: c["status"] for c in gpu["verify"]["checks"]}
    assert checks["CUDA devices"] == "skipped"  # replayed: the H100s are not on this machine

    # the same again: nothing to do, and the index is not asked anything
    before = len(sim.requests())
    again = auto(["torch==2.9.*", "--replay", str(HOSTS / "cpu-cloud-vm"), "--python", PY,
                  "--prefix", str(tmp_path / "cpu-cloud-vm" / ".venv")], tmp_path, sim)  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["action"] == "unchanged"
    assert len(sim.requests()) == before


# ---------------------------------------------------------------- a real torch


def _local_wheel_dirs() -> list[Path]:
    """Where this machine's pip configuration finds wheels: find-links and file:// indexes."""
    config = read_pip_config()
    dirs = [Path(link) for link in config.find_links if "://" not in link]
    for url in (config.index_url, *config.extra_index_urls):
        if url and url.startswith("file://"):
            dirs.append(Path(unquote(urlparse(url).path)))
    return dirs


def _find_wheel(
    dirs: list[Path],
    project: str,
    want: re.Pattern[str] | None = None,
    spec: SpecifierSet | None = None,
) -> Path | None:
    """The newest wheel of `project` for this interpreter that fits `spec` (and `want`)."""
    name = canonicalize_name(project)
    found: list[Path] = []
    for d in dirs:
        found += [c for c in d.glob("*.whl") if _fits(c, name, want)]
        page = d / name / "index.html"
        if page.is_file():
            for href in re.findall(r'href="([^"#]+)', page.read_text()):
                path = (page.parent / unquote(href)).resolve()
                if path.suffix == ".whl" and path.is_file() and _fits(path, name, want):
                    found.append(path)
    fitting = [p for p in found if spec is None or parse_wheel_filename(p.name)[1] in spec]
    return max(fitting, key=lambda p: parse_wheel_filename(p.name)[1], default=None)


def _fits(path: Path, name: str, want: re.Pattern[str] | None) -> bool:
    from packaging.tags import sys_tags

    try:
        project, _, _, tags = parse_wheel_filename(path.name)
    except ValueError:
        return False
    ours = set(sys_tags())
    return project == name and bool(tags & ours) and (want is None or bool(want.search(path.name)))


def _requires(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    env = {**default_environment(), "extra": ""}
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]  # fmt: skip
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def real_torch_catalog() -> tuple[Catalog, dict[str, Path]] | None:
    """The local CPU torch wheel and its dependency closure, as simulator files (or None)."""
    dirs = _local_wheel_dirs()
    torch = _find_wheel(dirs, "torch", re.compile(r"\+cpu-"))
    if torch is None:
        return None
    files, todo, seen = [], [torch], set()
    while todo:
        wheel = todo.pop()
        project, version, _, _ = parse_wheel_filename(wheel.name)
        if project in seen:
            continue
        seen.add(project)
        tag = wheel.name[: -len(".whl")].split("-", 2)[2]
        spec = WheelSpec(project, str(version), tag)
        index, variant = ("pytorch", "cpu") if project == "torch" else ("pypi", "")
        files.append((Hosted(index, "", variant, spec, pep658=False), spec.filename, wheel))
        for req in _requires(wheel):
            dep = _find_wheel(dirs, req.name, spec=req.specifier)
            if dep is None:
                return None
            todo.append(dep)
    return Catalog(tuple(h for h, _, _ in files)), {name: w for _, name, w in files}


@pytest.mark.skipif(sys.platform != "linux", reason="the local CPU torch wheel is for Linux")
def test_real_cpu_torch_through_the_simulator(tmp_path: Path) -> None:
    found = real_torch_catalog()
    if found is None:
        pytest.skip("the pip configuration offers no CPU torch wheel for this interpreter")
    catalog, paths = found
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    for filename, path in paths.items():
        (site_dir / filename).symlink_to(path)
    site = build_site(catalog, site_dir)
    torch_version = next(parse_wheel_filename(f)[1].public for f in paths if f.startswith("torch-"))
    with IndexSim(site, Knobs()) as server:
        project = tmp_path / "proj"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "p"\nversion = "0"\ndependencies = ["torch=={torch_version}"]\n'
        )
        done = auto([], project, server)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    checks = {c["name"]: c["status"] for c in result["verify"]["checks"]}
    assert checks["import torch"] == "passed" and checks["compute on cpu"] == "passed"
    assert checks["cpu build"] == "passed" and checks["GPU devices"] == "skipped"
    assert (project / "pylock.toml").is_file() and (project / ".venv").is_symlink()
