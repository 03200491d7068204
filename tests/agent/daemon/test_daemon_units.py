"""The agent's pure parts: configuration, reconcile decision, HTTP parsing, verdicts, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.daemon import http
from torchenv.agent.daemon.client import render_status
from torchenv.agent.daemon.config import EnvironmentSpec, parse_config
from torchenv.agent.daemon.metrics import render_metrics, render_nfd
from torchenv.agent.daemon.provision import child_argv, child_env, judge
from torchenv.agent.daemon.state import (
    Action,
    EnvState,
    EnvStatus,
    LastError,
    after_failure,
    after_success,
    backoff,
    decide,
    load_state,
    save_state,
)

ENV = {"name": "default", "prefix": "/opt/torchenv/default"}


def _config(
    agent: dict[str, Any] | None = None,
    envs: list[dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> Any:
    data = {"agent": agent or {}, "environment": [ENV] if envs is None else envs}
    return parse_config(data, where="test.toml", env=environ or {})


def test_config_defaults_follow_systemd_directories() -> None:
    config = _config(
        environ={"STATE_DIRECTORY": "/var/lib/x:/var/lib/y", "RUNTIME_DIRECTORY": "/run/x"}
    )
    assert config.state_dir == Path("/var/lib/x")
    assert config.socket == Path("/run/x/agent.sock")
    plain = _config()
    assert plain.state_dir == Path("/var/lib/torchenv")
    assert plain.socket == Path("/run/torchenv/agent.sock")
    spec = plain.environments[0]
    assert (spec.requirements, spec.channel, spec.backend) == (("torch",), "stable", "auto")


@pytest.mark.parametrize(
    ("agent", "envs", "match"),
    [
        ({}, [], "names no"),
        ({"bogus": 1}, None, "unknown key"),
        ({"interval": 0}, None, "positive number"),
        ({"interval": True}, None, "positive number"),
        ({"provisioner": 5}, None, "provisioner"),
        ({}, [{"name": "x"}], "absolute prefix"),
        ({}, [{"name": "x", "prefix": "rel"}], "absolute prefix"),
        ({}, [{"name": "bad name", "prefix": "/p"}], "no valid name"),
        ({}, [{**ENV, "channel": "beta"}], "channel"),
        ({}, [{**ENV, "requirements": [1]}], "must be strings"),
        ({}, [{**ENV, "extra": 1}], "unknown key"),
        ({}, [ENV, {**ENV, "prefix": "/other"}], "share a name"),
        ({}, [ENV, {**ENV, "name": "other"}], "share a name"),
    ],
)
def test_config_errors_say_what_to_do(agent: dict[str, Any], envs: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _config(agent, envs)
    assert info.value.hint


def test_digest_changes_with_what_was_asked() -> None:
    base = EnvironmentSpec(name="a", prefix=Path("/p"))
    assert base.digest() == EnvironmentSpec(name="a", prefix=Path("/p")).digest()
    for changed in (
        EnvironmentSpec(name="a", prefix=Path("/p"), channel="nightly"),
        EnvironmentSpec(name="a", prefix=Path("/p"), requirements=("torch", "numpy")),
        EnvironmentSpec(name="a", prefix=Path("/p"), backend="cpu"),
    ):
        assert changed.digest() != base.digest()


ACTIVE = EnvStatus(name="a", prefix="/p", state=EnvState.ACTIVE, fingerprint="F", desired="D")


@pytest.mark.parametrize(
    ("status", "fingerprint", "prefix_ok", "now", "forced", "action"),
    [
        (ACTIVE, "F", True, 0, False, Action.KEEP),
        (ACTIVE, "G", True, 0, False, Action.PROVISION),
        (ACTIVE, "F", False, 0, False, Action.PROVISION),
        (EnvStatus(name="a", prefix="/p"), "F", True, 0, False, Action.PROVISION),
        (
            EnvStatus(name="a", prefix="/p", failed_for=("G", "D"), next_retry=100),
            "G",
            True,
            50,
            False,
            Action.WAIT,
        ),
        (
            EnvStatus(name="a", prefix="/p", failed_for=("G", "D"), next_retry=100),
            "G",
            True,
            50,
            True,
            Action.PROVISION,
        ),
        (
            EnvStatus(name="a", prefix="/p", failed_for=("G", "D"), next_retry=100),
            "G",
            True,
            150,
            False,
            Action.PROVISION,
        ),
        (
            EnvStatus(name="a", prefix="/p", failed_for=("G", "D"), next_retry=100),
            "H",
            True,
            50,
            False,
            Action.PROVISION,
        ),
    ],
)
def test_decide(  # noqa: PLR0917 - one parameter per table column
    status: EnvStatus, fingerprint: str, prefix_ok: bool, now: float, forced: bool, action: Action
) -> None:
    assert decide(status, fingerprint, "D", prefix_ok=prefix_ok, now=now, forced=forced) is action


@given(
    st.integers(min_value=1, max_value=200),
    st.floats(min_value=0.1, max_value=100),
    st.floats(min_value=100, max_value=10000),
)
def test_backoff_doubles_and_is_bounded(failures: int, initial: float, maximum: float) -> None:
    value = backoff(failures, initial, maximum)
    assert initial <= value <= maximum or value == maximum
    assert backoff(failures + 1, initial, maximum) >= value


def test_failures_count_per_target_and_success_resets() -> None:
    error = LastError("boom", None, "provision", at=1000.0)
    once = after_failure(ACTIVE, error, target=("G", "D"), initial=10, maximum=100)
    twice = after_failure(once, error, target=("G", "D"), initial=10, maximum=100)
    other = after_failure(twice, error, target=("H", "D"), initial=10, maximum=100)
    assert (once.failures, once.next_retry) == (1, 1010.0)
    assert (twice.failures, twice.next_retry) == (2, 1020.0)
    assert other.failures == 1
    assert twice.fingerprint == "F" and twice.state is EnvState.FAILED  # old env still recorded
    done = after_success(
        twice,
        fingerprint="G",
        desired="D",
        backend="cu130",
        torch="2.11",
        python="3.12",
        now=2000.0,
    )
    assert (done.failures, done.last_error, done.state) == (0, None, EnvState.ACTIVE)
    assert done.provisions == {"ok": 1, "failed": 2}


def test_state_round_trip_and_prefix_guard(tmp_path: Path) -> None:
    done = after_success(
        EnvStatus(name="a", prefix="/p"),
        fingerprint="F",
        desired="D",
        backend="cpu",
        torch="2.11.0+cpu",
        python="3.12",
        now=5.0,
    )
    save_state(tmp_path / "s.json", {"a": done})
    loaded = load_state(tmp_path / "s.json", EnvStatus(name="a", prefix="/p"))
    assert (loaded.fingerprint, loaded.backend, loaded.last_verify) == ("F", "cpu", 5.0)
    moved = load_state(tmp_path / "s.json", EnvStatus(name="a", prefix="/elsewhere"))
    assert moved.fingerprint is None
    (tmp_path / "bad.json").write_text("{not json")
    assert load_state(tmp_path / "bad.json", EnvStatus(name="a", prefix="/p")).fingerprint is None


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1", None),
        (b"GET /v1/status?x=1 HTTP/1.0\r\nHost: a", None),
        (b"get", 400),
        (b"GET  /v1/status HTTP/1.1", 400),
        (b"GET v1/status HTTP/1.1", 400),
        (b"GET /v1/status HTTP/3", 505),
        (b"GET /v1/status FTP/1.1", 400),
        (b"G(T /v1/status HTTP/1.1", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
        (b"GET /x HTTP/1.1\r\nno colon", 400),
        (b"GET /x HTTP/1.1\r\nbad name: 1", 400),
        (b"GET /\xc3\xa9 HTTP/1.1", 400),
    ],
)
def test_parse_head(head: bytes, status: int | None) -> None:
    if status is None:
        request = http.parse_head(head)
        assert request.method == "GET"
        assert "?" not in request.path
    else:
        with pytest.raises(http.HttpError) as info:
            http.parse_head(head)
        assert info.value.status == status


@given(st.binary(max_size=300))
def test_parse_head_never_crashes(data: bytes) -> None:
    try:
        http.parse_head(data)
    except http.HttpError as exc:
        assert 400 <= exc.status < 600


def test_judge_success_failure_signal_and_interrupt() -> None:
    ok = judge(0, b'{"backend": "cu130", "torch": "2.11.0+cu130"}', b"", interrupted=False)
    assert (ok.ok, ok.backend, ok.torch) == (True, "cu130", "2.11.0+cu130")
    nested = judge(0, b'progress\n{"selection": {"backend": "cpu"}}', b"", interrupted=False)
    assert nested.backend == "cpu"
    failed = judge(
        1, b'{"error": "selection", "message": "no build", "hint": "h"}', b"", interrupted=False
    )
    assert (failed.ok, failed.message, failed.hint, failed.kind) == (
        False,
        "no build",
        "h",
        "selection",
    )
    crashed = judge(3, b"", b"Traceback\nValueError: bad\n", interrupted=False)
    assert crashed.message == "ValueError: bad" and crashed.exit_code == 3
    killed = judge(-9, b"", b"", interrupted=False)
    assert "signal 9 SIGKILL" in (killed.message or "")
    stopped = judge(-15, b"", b"", interrupted=True)
    assert stopped.interrupted and not stopped.ok
    refused = judge(0, b'{"ok": false, "message": "not verified"}', b"", interrupted=False)
    assert not refused.ok


def test_child_command_and_environment() -> None:
    config = _config(
        {"host-replay": "/rec", "provisioner": ["/bin/fake"]},
        [{**ENV, "requirements": ["torch", "numpy<2"], "channel": "nightly", "backend": "cu130"}],
    )
    spec = config.environments[0]
    assert child_argv(config, spec) == [
        "/bin/fake",
        "auto",
        "torch",
        "numpy<2",
        "--prefix",
        "/opt/torchenv/default",
        "--json",
        "--replay",
        "/rec",
    ]
    env = child_env(config, spec, {"PATH": "/bin", "NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "1"})
    assert env["TORCHENV_CHANNEL"] == "nightly" and env["TORCHENV_BACKEND"] == "cu130"
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env
    default = _config()
    assert child_argv(default, default.environments[0])[1:3] == ["-m", "torchenv.agent"]
    assert "TORCHENV_BACKEND" not in child_env(
        default, default.environments[0], {"TORCHENV_BACKEND": "cpu"}
    )
    leaked = {"UV_TORCH_BACKEND": "cu126", "TORCHENV_TORCH_BACKEND": "cpu"}
    assert not set(leaked) & set(child_env(default, default.environments[0], leaked))


def test_metrics_and_nfd() -> None:
    active = after_success(
        EnvStatus(name="gpu", prefix="/p"),
        fingerprint="F",
        desired="D",
        backend="cu130",
        torch="2.11.0+cu130",
        python="3.12",
        now=10.0,
    )
    pending = EnvStatus(name="other", prefix="/q")
    text = render_metrics(
        [active, pending], version="0.1.0", started=1.0, fingerprint="F", reconciles=3, ready=True
    )
    assert 'torchenv_environment_state{environment="gpu",state="active"} 1' in text
    assert 'torchenv_environment_state{environment="other",state="pending"} 1' in text
    assert 'torchenv_environment_last_verify_timestamp_seconds{environment="gpu"} 10' in text
    assert "torchenv_reconciles_total 3" in text
    for line in text.splitlines():
        assert line.startswith("#") or line.split(" ")[-1].replace(".", "").isdigit()
    nfd = render_nfd([active, pending]).splitlines()
    assert "torchenv.io/backend=cu130" in nfd
    assert "torchenv.io/torch=2.11.0_cu130" in nfd  # '+' is not allowed in label values
    assert "torchenv.io/gpu.backend=cu130" in nfd
    assert not any("other" in line for line in nfd)


def test_render_status_shows_errors_and_hints() -> None:
    text = render_status(
        {
            "agent": {"version": "0.1.0", "pid": 1, "ready": True, "host_fingerprint": "F"},
            "environments": [
                {
                    "name": "a",
                    "state": "failed",
                    "backend": "cu128",
                    "torch": "2.11",
                    "prefix": "/p",
                    "last_verify": 0.0,
                    "last_error": {"message": "boom", "hint": "do X", "at": 0.0},
                }
            ],
        },
        now=7200.0,
    )
    assert "a: failed  torch 2.11 (cu128)  /p  verified 2h ago" in text
    assert "boom" in text and "hint: do X" in text
