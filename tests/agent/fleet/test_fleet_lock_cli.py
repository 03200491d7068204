"""`torchenv lock --publish`: its inputs, its output, and a class that cannot be locked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv
from helpers.isolation import use_sim
from helpers.locks import PY
from indexsim import IndexSim
from typer.testing import CliRunner

from torchenv.agent.cli.main import app
from torchenv.agent.host.source import HostFlags, load_host


@pytest.fixture
def env(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


CPU = str(HOSTS / "cpu-cloud-vm")
H100 = str(HOSTS / "h100-driver580")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--replay", CPU, "--replay", H100], "--publish DIR"),
        (["--replay", CPU, "--publish", "out", "-o", "x.toml"], "-o works on one lock file"),
        (["--replay", CPU, "--publish", "out", "--check"], "--check works on one lock file"),
        (["--publish", "out"], "needs the hosts"),
        (["--host-report", "empty", "--publish", "out"], "holds no host reports"),
    ],
)
def test_inputs_that_cannot_be_published(env: Path, args: list[str], says: str) -> None:
    (env / "empty").mkdir()
    code, out = invoke("lock", *args)
    assert code == 1 and says in out and "Traceback" not in out
    assert not (env / "out").exists() and not (env / "x.toml").exists()


def test_reports_of_a_directory_are_published_and_a_failed_class_is_named(env: Path) -> None:
    need_uv()
    reports = env / "reports"
    reports.mkdir()
    for name in ("cpu-cloud-vm", "this-dev-box", "amd-mi300x"):  # no rocm torch 2.9 for amd
        report = load_host(replay=HOSTS / name, flags=HostFlags(python=PY))
        (reports / f"{name}.json").write_text(json.dumps(report.to_json()))
    code, out = invoke(
        "lock", "torch==2.9.*", "--host-report", str(reports), "--publish", "locks", "--json"
    )
    assert code == 1, out
    done = json.loads(out)
    failed, ok = done["classes"]  # in the order of their first host: the files' sorted names
    assert ok["ok"] and ok["hosts"] == [str(reports / "cpu-cloud-vm.json"),
                                        str(reports / "this-dev-box.json")]  # fmt: skip
    assert not failed["ok"] and failed["hosts"] == [str(reports / "amd-mi300x.json")]
    assert failed["error"]["error"] == "selection" and "rocm" in failed["error"]["message"]
    index = json.loads((env / "locks" / "index.json").read_text())
    assert set(index["classes"]) == {ok["fingerprint"]}  # the other class is not lost

    code, text = invoke("lock", "torch==2.9.*", "--host-report", str(reports), "--publish", "locks")
    assert code == 1
    assert f"{failed['fingerprint']}  FAILED" in text
    assert f"1 of 2 classes could not be locked: {failed['fingerprint']}" in text
    assert "3 hosts in 2 classes: 1 locked (2 resolutions)" in text


def test_config_shows_the_lock_source_and_where_it_came_from(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCHENV_LOCK_SOURCE", "https://locks.example/fleet/")
    code, out = invoke("config", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["lock-source"] == {
        "value": "https://locks.example/fleet/",
        "source": "environment (TORCHENV_LOCK_SOURCE)",
    }
    assert shown["lock-source-missing"]["value"] == "resolve"
    monkeypatch.setenv("TORCHENV_LOCK_SOURCE_MISSING", "sometimes")
    code, out = invoke("config")
    assert code == 1 and "lock-source-missing = 'sometimes'" in out and "resolve, fail" in out
