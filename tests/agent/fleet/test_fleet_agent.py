"""The agent with a lock source: per environment or global, handed to `auto`, and a new
publication re-runs `auto` (which takes the class's lock) without the host changing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.daemon import FAKE_AUTO, running_agent, wait_until, write_config

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.base.settings import load_settings
from torchenv.agent.daemon.config import EnvironmentSpec, parse_config
from torchenv.agent.daemon.provision import child_env

ENV = {"name": "default", "prefix": "/opt/torchenv/default"}


def _index(directory: Path, sha: str) -> None:
    """An index naming one (fake) lock: the agent reads only the index, the fake auto nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    entry = {
        "lock": "0123456789abcdef/pylock.0123456789abcdef.toml",
        "sha256": sha * 64,
        "size": 100,
        "target": {},
        "backend": "cpu",
        "torch": "2.9.0",
        "hosts": ["n"],
    }
    doc = {"format": "torchenv-lock-index", "version": 1, "classes": {"0123456789abcdef": entry}}
    (directory / "index.json").write_text(json.dumps(doc))


def test_an_environment_names_its_own_lock_source() -> None:
    config = parse_config(
        {"environment": [{**ENV, "lock-source": "https://locks.example/fleet/",
                          "lock-source-missing": "fail"}]},
        where="t", env={},
    )  # fmt: skip
    spec = config.environments[0]
    assert spec.lock_source == "https://locks.example/fleet/"
    env = child_env(config, spec, {"TORCHENV_LOCK_SOURCE": "/global"})
    assert env["TORCHENV_LOCK_SOURCE"] == "https://locks.example/fleet/"
    assert env["TORCHENV_LOCK_SOURCE_MISSING"] == "fail"
    # without one of its own the environment takes the global setting, as every other one
    plain = parse_config({"environment": [ENV]}, where="t", env={})
    inherited = child_env(plain, plain.environments[0], {"TORCHENV_LOCK_SOURCE": "/global"})
    assert inherited["TORCHENV_LOCK_SOURCE"] == "/global"
    assert "TORCHENV_LOCK_SOURCE_MISSING" not in inherited
    # the source is part of what was asked for: changing it re-provisions
    base = EnvironmentSpec("default", Path("/opt/torchenv/default"))
    assert spec.digest() != EnvironmentSpec(**{**vars(base), "lock_source": "/x"}).digest()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"lock-source": "ftp://x"}, "lock-source 'ftp://x'"),
        ({"lock-source": 3}, "must be a string"),
        ({"lock-source-missing": "retry"}, "lock-source-missing 'retry'"),
    ],
)
def test_a_bad_lock_source_in_the_config_is_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config({"environment": [{**ENV, **extra}]}, where="t", env={})


def test_the_global_lock_source_is_a_setting_of_the_agents_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'lock-source = "https://locks.example/fleet"\n\n[agent]\n\n[[environment]]\n'
        'name = "default"\nprefix = "/opt/torchenv/default"\n'
    )
    settings = load_settings(env={"TORCHENV_SYSTEM_CONFIG": str(config), "HOME": str(tmp_path)},
                             cwd=tmp_path, user_config=tmp_path / "none.toml")  # fmt: skip
    assert settings["lock-source"].value == "https://locks.example/fleet"
    assert settings["lock-source"].source.startswith("system config")


def test_a_new_publication_reprovisions_without_a_host_change(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    _index(locks, "a")
    control = tmp_path / "control.json"
    control.write_text("{}")
    calls = control.with_suffix(".calls")
    socket_path = tmp_path / "run" / "agent.sock"
    (tmp_path / "envs").mkdir()
    config = write_config(
        tmp_path / "config.toml", socket=socket_path, state_dir=tmp_path / "state",
        host_replay=HOSTS / "rtx5090-driver570", provisioner=[sys.executable, str(FAKE_AUTO)],
        interval=600, watch_interval=0.2, backoff_initial=600, stop_timeout=5,
        environments=[{"name": "default", "prefix": tmp_path / "envs" / "default",
                       "lock-source": str(locks)}],
    )  # fmt: skip
    env = {"FAKE_AUTO_CONTROL": str(control), "TORCHENV_CACHE_DIR": str(tmp_path / "cache")}

    def provisions() -> list[dict[str, Any]]:
        text = calls.read_text() if calls.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    def reconcile(agent: Any) -> None:
        assert agent.post("/v1/reconcile")[0] == 202

    with running_agent(config, socket_path, tmp_path / "agent.log", env) as agent:
        wait_until(lambda: len(provisions()) == 1, "the first provision")
        agent.wait_state("active")
        assert provisions()[0]["lock_source"] == str(locks)
        reconcile(agent)  # nothing changed: nothing runs (counted at the end)
        _index(locks, "b")  # a new publication
        reconcile(agent)
        wait_until(lambda: "the published locks changed" in agent.text(), "a re-provision")
        wait_until(lambda: len(provisions()) == 2, "the second provision")
        agent.wait_state("active")
        (locks / "index.json").unlink()  # the source is gone: keep what is there, say why

        def warned(times: int) -> bool:
            return agent.text().count("cannot read its lock source") >= times

        reconcile(agent)
        wait_until(lambda: warned(1), "the warning")
        reconcile(agent)  # its warning comes after the first reconcile has ended
        wait_until(lambda: warned(2), "the second warning")
        assert len(provisions()) == 2 and agent.env_status()["state"] == "active"
        assert agent.terminate() == 0


def test_the_fleet_locks_overlay_gives_every_agent_the_lock_source(tmp_path: Path) -> None:
    from helpers.kube import KUBE, agent_config, base, render

    rendered = render(KUBE / "overlays/fleet-locks")
    config = agent_config(rendered, tmp_path)  # the agent's own parser reads it
    settings = load_settings(
        env={"TORCHENV_SYSTEM_CONFIG": str(tmp_path / "config.toml"), "HOME": str(tmp_path)},
        cwd=tmp_path, user_config=tmp_path / "none.toml",
    )  # fmt: skip
    assert settings["lock-source"].value.startswith("https://")
    assert settings["lock-source"].source.startswith("system config")
    assert settings["lock-source-missing"].value == "resolve"
    (tmp_path / "base").mkdir()
    assert config.environments == agent_config(base(), tmp_path / "base").environments
