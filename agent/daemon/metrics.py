"""Prometheus text exposition and Node Feature Discovery labels, rendered from status data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from torchenv.agent.daemon.state import EnvState, EnvStatus

NFD_PREFIX = "torchenv.io/"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str | None]) -> str:
    inner = ",".join(f'{k}="{_escape(v or "")}"' for k, v in pairs.items())
    return "{" + inner + "}" if inner else ""


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str | None], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {value:g}" for labels, value in samples]
    return lines


def render_metrics(
    statuses: Sequence[EnvStatus],
    *,
    version: str,
    started: float,
    fingerprint: str | None,
    reconciles: int,
    ready: bool,
) -> str:
    """The agent's metrics in the Prometheus text format (version 0.0.4)."""
    lines: list[str] = []
    lines += _family(
        "torchenv_agent_info",
        "gauge",
        "The running agent.",
        [({"version": version, "host_fingerprint": fingerprint}, 1)],
    )
    lines += _family(
        "torchenv_agent_start_time_seconds",
        "gauge",
        "When the agent started (Unix time).",
        [({}, started)],
    )
    lines += _family(
        "torchenv_agent_ready",
        "gauge",
        "1 once the first reconcile finished.",
        [({}, 1 if ready else 0)],
    )
    lines += _family(
        "torchenv_reconciles_total", "counter", "Reconcile passes run.", [({}, reconciles)]
    )
    lines += _family(
        "torchenv_environment_state",
        "gauge",
        "1 for the state each environment is in.",
        [
            ({"environment": s.name, "state": state.value}, 1 if s.state is state else 0)
            for s in statuses
            for state in EnvState
        ],
    )
    lines += _family(
        "torchenv_environment_info",
        "gauge",
        "The torch build active in each environment.",
        [
            ({"environment": s.name, "backend": s.backend, "torch": s.torch, "prefix": s.prefix}, 1)
            for s in statuses
            if s.fingerprint
        ],
    )
    lines += _family(
        "torchenv_environment_last_verify_timestamp_seconds",
        "gauge",
        "When the active environment last verified (Unix time).",
        [({"environment": s.name}, s.last_verify) for s in statuses if s.last_verify is not None],
    )
    lines += _family(
        "torchenv_environment_consecutive_failures",
        "gauge",
        "Failed provisions since the last success.",
        [({"environment": s.name}, s.failures) for s in statuses],
    )
    lines += _family(
        "torchenv_environment_provisions_total",
        "counter",
        "Provisions run, by result.",
        [
            ({"environment": s.name, "result": result}, s.provisions.get(result, 0))
            for s in statuses
            for result in ("ok", "failed")
        ],
    )
    return "\n".join(lines) + "\n"


def _label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:63]
    return cleaned.strip("_.-")


def render_nfd(statuses: Sequence[EnvStatus]) -> str:
    """NFD feature lines: the first environment unqualified, every one by name."""
    lines = ["# written by torchenv agent; one label per line"]
    for index, status in enumerate(statuses):
        if status.fingerprint is None or status.backend is None:
            continue
        values = {"backend": status.backend, "torch": status.torch}
        for key, value in values.items():
            if value is None or not _label_value(value):
                continue
            if index == 0:
                lines.append(f"{NFD_PREFIX}{key}={_label_value(value)}")
            lines.append(f"{NFD_PREFIX}{_label_value(status.name)}.{key}={_label_value(value)}")
    return "\n".join(lines) + "\n"
