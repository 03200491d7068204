"""`torchenv select` on the command line: JSON, explanation, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import HOSTS
from typer.testing import CliRunner

from torchenv.agent.cli.main import app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "TORCHENV_CACHE_DIR": str(tmp_path / "cache"),
        "TORCHENV_USER_CONFIG": str(tmp_path / "none.toml"),
    }


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.output


def test_json_for_a_recorded_host(env: dict[str, str]) -> None:
    code, out = invoke(["select", "--json", "--replay", str(HOSTS / "gtx1080ti-driver580")], env)
    assert code == 0, out
    data = json.loads(out)
    assert (data["torch"], data["backend"], data["channel"]) == ("2.14", "cu126", "stable")
    assert data["index_url"] == os.environ["TORCHENV_TORCH_INDEX_URL"] + "/cu126"
    assert all({"backend", "torch", "ok", "reasons"} <= set(c) for c in data["candidates"])


def test_unsatisfiable_constraints_exit_1_with_the_unlock_hint(env: dict[str, str]) -> None:
    code, out = invoke(["select", "torch>=2.12", "--replay", str(HOSTS / "rtx5090-driver570")], env)
    assert code == 1
    assert "driver >= 580" in out and "cu130" in out


def test_unsatisfiable_as_json_carries_the_candidates(env: dict[str, str]) -> None:
    code, out = invoke(
        [
            "select",
            "--json",
            "torch>=2.12",
            "--os",
            "linux",
            "--python",
            "3.12",
            "--driver",
            "570.133.07",
            "--gpu",
            "12.0",
        ],
        env,
    )
    assert code == 1
    data = json.loads(out)
    assert data["error"] == "selection" and data["details"]["candidates"]


def test_explain_names_the_pick_and_the_rejections(env: dict[str, str]) -> None:
    code, out = invoke(
        [
            "select",
            "--explain",
            "--os",
            "linux",
            "--arch",
            "x86_64",
            "--python",
            "3.12",
            "--driver",
            "580.95.05",
            "--gpu",
            "6.1",
        ],
        env,
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("chosen: torch 2.14 + cu126")
    assert any(line.split()[:3] == ["no", "2.14-2.15", "cu130"] for line in lines)
    assert len(lines) < 20


def test_channel_and_backend_options(env: dict[str, str]) -> None:
    code, out = invoke(
        [
            "select",
            "--json",
            "--channel",
            "nightly",
            "--backend",
            "cu130",
            "--os",
            "linux",
            "--python",
            "3.12",
            "--driver",
            "580.95.05",
            "--gpu",
            "9.0",
        ],
        env,
    )
    assert code == 0, out
    data = json.loads(out)
    assert data["index_url"].endswith("/whl/nightly/cu130") and data["torch"] == "2.16"


def test_a_bad_requirement_is_exit_1(env: dict[str, str]) -> None:
    code, out = invoke(["select", "torch>>2", "--os", "linux", "--python", "3.12"], env)
    assert code == 1 and "requirement" in out


def test_catalog_show_lists_releases(env: dict[str, str]) -> None:
    code, out = invoke(["catalog", "show", "--json"], env)
    assert code == 0, out
    data = json.loads(out)
    assert data["releases"][0]["torch"] == "2.15" and data["sources"]
