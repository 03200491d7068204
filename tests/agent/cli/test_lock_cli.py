"""`torchenv lock` end to end: the command, -o written atomically, --check, --json, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.isolation import use_sim
from indexsim import IndexSim
from typer.testing import CliRunner

from torchenv.agent.cli.main import app
from torchenv.agent.lock.pylock import read_pylock

H100 = str(HOSTS / "h100-driver580")


@pytest.fixture
def env(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_uv()
    use_sim(monkeypatch, tmp_path, indexsim)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_lock_writes_a_pylock_for_the_replayed_host(env: Path) -> None:
    code, out = invoke(
        "lock", "torch==2.9.0", "torchvision", "--replay", H100, "--backend", "cu126"
    )
    assert code == 0, out
    lock = read_pylock(env / "pylock.toml")
    torch = lock.package("torch")
    assert torch is not None and torch.version == "2.9.0+cu126"
    assert torch.wheel.name.startswith("torch-2.9.0+cu126-cp310-")  # the recorded Python
    tool = lock.tool_torchenv
    assert tool["backend"] == "cu126" and tool["torch"] == "2.9" and tool["python"] == "3.10"
    assert tool["resolver"] == "uv" and tool["reasons"]
    assert "Locked" in out

    code, out = invoke("lock", "--check", "--replay", H100)
    assert code == 0, out
    code, out = invoke("lock", "--check", "--replay", H100, "--arch", "aarch64", "--json")
    assert code == 1
    facts = {d["fact"] for d in json.loads(out)["differences"]}
    assert "arch" in facts


def test_requirements_file_and_json(env: Path) -> None:
    (env / "reqs.txt").write_text("# the model\ntorch==2.9.0\ncertifi  # for https\n")
    code, out = invoke(
        "lock", "-r", "reqs.txt", "-o", "locks/pylock.gpu.toml", "--replay", H100,
        "--backend", "cu126", "--resolver", "pip", "--json",
    )  # fmt: skip
    assert code == 2, out  # the directory does not exist: refused at once, with a hint
    assert (
        json.loads(out)["error"] == "usage" and "no directory locks" in json.loads(out)["message"]
    )
    (env / "locks").mkdir()
    code, out = invoke(
        "lock", "-r", "reqs.txt", "-o", "locks/pylock.gpu.toml", "--replay", H100,
        "--backend", "cu126", "--resolver", "pip", "--json",
    )  # fmt: skip
    assert code == 0, out
    summary = json.loads(out)
    names = {p["name"] for p in summary["packages"]}
    assert {"torch", "certifi"} <= names and "torchvision" not in names
    assert summary["tool"]["resolver"] == "pip"
    assert all(len(p["sha256"]) == 64 for p in summary["packages"])
    # sizes where the page lists them (PyPI's JSON), none from the torch index's HTML
    assert all((p["size"] is None) == (p["name"] == "torch") for p in summary["packages"])
    assert all(p["size"] > 0 for p in summary["packages"] if p["size"] is not None)


def test_pyproject_dependencies_are_the_default_input(env: Path) -> None:
    (env / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0"\ndependencies = ["torch==2.9.0", "numpy"]\n'
    )
    code, out = invoke("lock", "--replay", H100, "--backend", "cpu")
    assert code == 0, out
    lock = read_pylock(env / "pylock.toml")
    assert {"torch", "numpy"} <= set(lock.names)
    assert lock.tool_torchenv["requirements"] == ["torch==2.9.0", "numpy"]


def test_a_failed_lock_leaves_the_old_file_untouched(env: Path, indexsim: IndexSim) -> None:
    (env / "pylock.toml").write_text("old lock\n")
    indexsim.knobs.wrong_hash.add(
        "torch-2.9.0+cu126-cp310-cp310-manylinux_2_28_x86_64.whl.metadata"
    )
    code, out = invoke("lock", "torch==2.9.0", "--replay", H100, "--backend", "cu126")
    assert code == 1
    assert "metadata" in out
    assert (env / "pylock.toml").read_text() == "old lock\n"
    assert sorted(p.name for p in env.iterdir()) == ["pylock.toml"]


def test_a_pip_option_in_a_requirements_file_is_refused(env: Path) -> None:
    (env / "reqs.txt").write_text("--extra-index-url https://example.org/simple\ntorch\n")
    code, out = invoke("lock", "-r", "reqs.txt", "--replay", H100)
    assert code == 1
    assert "pip option" in out
    assert not (env / "pylock.toml").exists()


def test_check_without_a_lock_says_so(env: Path) -> None:
    code, out = invoke("lock", "--check", "--replay", H100)
    assert code == 1
    assert "cannot read" in out


def test_lock_takes_autos_path_and_selects_with_every_requirement(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lock` and `auto` lock through one core function, and selection sees all requirements
    (before, `lock` assembled its own path and handed selection the torch family only)."""
    from torchenv.agent.pipeline import select_with_index, stages

    seen: list[tuple[str, ...]] = []
    real = select_with_index.begin_selection

    def spy(host, requirements, settings, **kw):  # type: ignore[no-untyped-def]
        seen.append(tuple(requirements))
        return real(host, requirements, settings, **kw)

    monkeypatch.setattr(select_with_index, "begin_selection", spy)
    paths: list[str] = []
    core = stages.lock_selected
    monkeypatch.setattr(
        stages, "lock_selected", lambda *a, **kw: paths.append("core") or core(*a, **kw)
    )
    code, out = invoke("lock", "torch==2.9.0", "numpy", "--replay", H100, "--backend", "cu126")
    assert code == 0, out
    assert paths == ["core"]
    assert seen == [("torch==2.9.0", "numpy")]
    assert read_pylock(env / "pylock.toml").package("numpy") is not None
