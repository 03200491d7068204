"""The agent's outputs as others read them: /metrics and the textfile through Prometheus' own
parser, the NFD feature file against NFD's rules, and a failed output in status and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.daemon import FAKE_AUTO, point, running_agent, wait_until, write_config
from helpers.nfd import label_name_problems, live_labels, parse_feature_file, parse_rfc3339, utcnow
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.daemon.config import parse_config
from torchenv.agent.daemon.metrics import env_segment, format_value, render_metrics, render_nfd
from torchenv.agent.daemon.outputs import OutputStatus, after_write
from torchenv.agent.daemon.state import EnvStatus, after_success

HOST = HOSTS / "rtx5090-driver570"
LONG = "gpu-" + "x" * 58 + "1"  # 63 characters: the longest name an environment may have
LONG_TWIN = "gpu-" + "x" * 58 + "2"  # the same head; only the last character differs


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, as Prometheus' text parser reads the exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def one(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str):
    matches = [v for (n, ls), v in parsed.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


class Node:
    """A tmp dir with a replayed host, the fake provisioner and an agent configuration."""

    def __init__(self, tmp: Path, **agent: Any) -> None:
        self.tmp = tmp
        self.host = tmp / "host"
        point(self.host, HOST)
        self.socket = tmp / "run" / "agent.sock"
        self.state = tmp / "state"
        self.textfile = tmp / "textfile" / "torchenv.prom"
        self.nfd = tmp / "features.d" / "torchenv"
        (tmp / "envs").mkdir()
        self.config = write_config(
            tmp / "config.toml",
            socket=self.socket,
            state_dir=self.state,
            host_replay=self.host,
            provisioner=[sys.executable, str(FAKE_AUTO)],
            interval=600,
            watch_interval=0.2,
            backoff_initial=600,
            stop_timeout=5,
            environments=[
                {"name": "default", "prefix": tmp / "envs" / "default"},
                {"name": LONG, "prefix": tmp / "envs" / "long"},
            ],
            **{"textfile": self.textfile, "nfd_feature_file": self.nfd, **agent},
        )

    def agent(self) -> Any:
        return running_agent(self.config, self.socket, self.tmp / "agent.log")

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "torchenv.agent", "status", "--socket", str(self.socket),
             *args], capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip


# ---------------------------------------------------------------- /metrics and the textfile


def test_real_agent_metrics_parse_and_round_trip_exactly(tmp_path: Path) -> None:
    node = Node(tmp_path)
    # An agent that ran for a long time before this restart: its counters are large.
    node.state.mkdir()
    (node.state / "agent-state.json").write_text(
        json.dumps(
            {
                "version": 1,
                "environments": {
                    "default": {
                        "prefix": str(tmp_path / "envs" / "default"),
                        "fingerprint": "a host this node was before",
                        "desired": "x",
                        "provisions": {"ok": 1234567, "failed": 2000001},
                    }
                },
            }
        )
    )
    with node.agent() as agent:
        agent.wait_state("active", backend="cu128")
        agent.wait_state("active", name=LONG, backend="cu128")
        status = agent.get("/v1/status")
        exposition = agent.get("/metrics")
        assert agent.terminate() == 0
    parsed = samples(exposition)
    started = status["agent"]["started"]
    assert one(parsed, "torchenv_agent_start_time_seconds") == started
    for env in status["environments"]:
        stamp = one(
            parsed,
            "torchenv_environment_last_verify_timestamp_seconds",
            environment=env["name"],
        )
        assert stamp == env["last_verify"] and stamp > 1e9
    ok = one(parsed, "torchenv_environment_provisions_total", environment="default", result="ok")
    assert ok == 1234568  # %g printed 1.23457e+06
    failed = one(
        parsed, "torchenv_environment_provisions_total", environment="default", result="failed"
    )
    assert failed == 2000001
    assert one(parsed, "torchenv_output_ok", output="nfd") == 1
    # The textfile is the same exposition, written for node_exporter; it parses the same way.
    written = samples(node.textfile.read_text())
    assert one(written, "torchenv_agent_start_time_seconds") == started


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1796163011, "1796163011"),
        (1796163011.0, "1796163011"),
        (1796163011.123456, "1796163011.123456"),
        (2**53 + 1, "9007199254740993"),
        (0.1, "0.1"),
        (1e-7, "1e-07"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_format_value_keeps_every_digit(value: float, text: str) -> None:
    assert format_value(value) == text


@given(
    st.floats(allow_nan=False),
    st.integers(min_value=0, max_value=2**63),
)
def test_any_value_survives_prometheus_parser(stamp: float, count: int) -> None:
    active = after_success(
        EnvStatus(name="e", prefix="/p", provisions={"ok": count, "failed": 0}),
        fingerprint="F",
        desired="D",
        backend="cpu",
        torch="2.13.0+cpu",
        python="3.11",
        now=stamp,
    )
    text = render_metrics(
        [active], version="0", started=stamp, fingerprint="F", reconciles=count, ready=True
    )
    parsed = samples(text)
    assert one(parsed, "torchenv_agent_start_time_seconds") == stamp
    assert one(parsed, "torchenv_reconciles_total") == count  # every digit, beyond 2**53 too
    assert one(parsed, "torchenv_environment_provisions_total", result="ok") == count + 1


# ---------------------------------------------------------------- NFD labels


def test_real_agent_feature_file_follows_nfd_rules_and_expires(tmp_path: Path) -> None:
    node = Node(tmp_path, nfd_expiry=2)
    with node.agent() as agent:
        agent.wait_state("active", backend="cu128")
        agent.wait_state("active", name=LONG, backend="cu128")
        first_text = wait_until(lambda: LONG[:20] in node.nfd.read_text() and node.nfd.read_text(),
                                "the long environment's labels")  # fmt: skip
        first_lines, problems = parse_feature_file(first_text)
        assert problems == [], problems
        now = utcnow()
        expires = first_lines[0].expires
        assert expires is not None and all(line.expires == expires for line in first_lines)
        assert now - timedelta(seconds=1) <= expires <= now + timedelta(seconds=3)
        labels = live_labels(first_lines, now - timedelta(seconds=1))
        segment = env_segment(LONG)
        assert labels == {
            "torchenv.io/backend": "cu128",
            "torchenv.io/torch": "2.11.0_cu128",
            "torchenv.io/default.backend": "cu128",
            "torchenv.io/default.torch": "2.11.0_cu128",
            f"torchenv.io/{segment}.backend": "cu128",
            f"torchenv.io/{segment}.torch": "2.11.0_cu128",
        }

        # Refreshed by the agent while it lives, with no reconcile in between...
        def later() -> str | None:
            text = node.nfd.read_text()
            lines, _ = parse_feature_file(text)
            return text if lines and lines[0].expires and lines[0].expires > expires else None

        wait_until(later, "a refreshed expiry", timeout=10)
        assert agent.get("/v1/status")["agent"]["reconciles"] == 1
        assert agent.terminate() == 0
    # ...and once it is gone, NFD drops every label after the expiry.
    lines, _ = parse_feature_file(node.nfd.read_text())
    assert live_labels(lines, utcnow() + timedelta(seconds=3)) == {}


def test_env_segment_is_short_deterministic_and_distinct() -> None:
    assert env_segment("default") == "default"
    fits = "a" * 55
    assert env_segment(fits) == fits
    long, twin = env_segment(LONG), env_segment(LONG_TWIN)
    assert long != twin and len(long) == len(twin) == 55
    assert long == env_segment(LONG) and long.startswith(LONG[:44])
    for name in (LONG, LONG_TWIN, "a-", "b.", fits):
        for key in ("backend", "torch"):
            assert label_name_problems(f"torchenv.io/{env_segment(name)}.{key}") == []


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", fullmatch=True))
def test_every_environment_name_gives_valid_labels(name: str) -> None:
    status = after_success(
        EnvStatus(name=name, prefix="/p"),
        fingerprint="F",
        desired="D",
        backend="rocm6.4",
        torch="2.9.1+rocm6.4",
        python="3.11",
        now=0.0,
    )
    lines, problems = parse_feature_file(render_nfd([status], expires=1e9))
    assert problems == [] and len(lines) == 4


def test_config_refuses_environments_whose_labels_would_coincide() -> None:
    shortened = env_segment(LONG)  # a short name equal to a long one's shortened form
    envs = [{"name": LONG, "prefix": "/opt/a"}, {"name": shortened, "prefix": "/opt/b"}]
    with pytest.raises(ConfigError, match="would share the node labels"):
        parse_config({"environment": envs}, where="t.toml", env={})
    fine = [{"name": LONG, "prefix": "/opt/a"}, {"name": LONG_TWIN, "prefix": "/opt/b"}]
    assert len(parse_config({"environment": fine}, where="t.toml", env={}).environments) == 2


def test_rule_checker_catches_what_nfd_refuses() -> None:
    """The checker itself: each rule fails on a line that breaks it."""
    bad = "\n".join(
        [
            "# +expiry-time=tomorrow",
            "# +bogus",
            "torchenv.io/" + "x" * 64,
            "torchenv.io/-x",
            "torchenv.io/x=2.11.0+cu130",
            "kubernetes.io/x=1",
            "unprefixed=1",
            "Torchenv.IO/x=1",
        ]
    )
    _, problems = parse_feature_file(bad)
    assert len(problems) == 8, problems
    assert parse_rfc3339("2026-12-01T22:40:00Z") is not None
    assert parse_rfc3339("2026-12-01T22:40:00.5+01:00") is not None
    assert parse_rfc3339("2026-12-01 22:40:00Z") is None
    assert label_name_problems("feature.node.kubernetes.io/pci-10de.present") == []


# ---------------------------------------------------------------- a failed output is visible


def test_failed_output_shows_in_status_check_and_metrics(tmp_path: Path) -> None:
    blocker = tmp_path / "textfile"
    blocker.write_text("a file where the textfile's directory should be")
    node = Node(tmp_path)
    with node.agent() as agent:
        agent.wait_state("active", name=LONG, backend="cu128")

        def written() -> dict[str, Any] | None:
            found = {o["name"]: o for o in agent.get("/v1/status")["outputs"]}
            return found if found["textfile"]["ok"] is not None else None

        outputs = wait_until(written, "the first publish")
        assert outputs["textfile"]["ok"] is False and outputs["nfd"]["ok"] is True
        assert outputs["state"]["ok"] is True
        assert str(node.textfile) in outputs["textfile"]["error"]
        assert outputs["textfile"]["hint"] and outputs["textfile"]["last_success"] is None
        parsed = samples(agent.get("/metrics"))
        assert one(parsed, "torchenv_output_ok", output="textfile") == 0
        assert one(parsed, "torchenv_output_ok", output="nfd") == 1
        text = node.status()
        assert text.returncode == 0 and "output textfile: FAILED" in text.stdout
        assert "hint: " in text.stdout
        assert node.status("--check").returncode == 1  # environments active, an output not
        blocker.unlink()
        code, _ = agent.post("/v1/reconcile")
        assert code == 202
        wait_until(node.textfile.is_file, "the textfile after the fix")
        assert node.status("--check").returncode == 0
        assert "FAILED" not in node.status().stdout
        assert "cannot write" in agent.text()  # logged too
        assert agent.terminate() == 0


def test_write_hints_say_where_to_look() -> None:
    import errno

    base = OutputStatus(name="nfd", path="/etc/kubernetes/node-feature-discovery/features.d/t")
    failed = after_write(base, now=5.0, error=OSError(errno.EROFS, "Read-only file system"))
    assert failed.ok is False and failed.last_attempt == 5.0 and failed.last_success is None
    assert "ReadWritePaths=" in (failed.hint or "")
    assert "Read-only file system" in (failed.error or "")
    again = after_write(failed, now=6.0, error=None)
    assert (again.ok, again.error, again.hint, again.last_success) == (True, None, None, 6.0)
