"""Each environment's status as frozen data, the pure reconcile decision, and its persistence."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torchenv.agent.base.fsutil import write_atomic


class EnvState(str, enum.Enum):
    PENDING = "pending"  # never provisioned by this agent
    PROVISIONING = "provisioning"
    ACTIVE = "active"  # verified for the current host and desired state
    FAILED = "failed"  # the last attempt failed; the previous environment (if any) stays active


class Action(str, enum.Enum):
    KEEP = "keep"
    PROVISION = "provision"
    WAIT = "wait"  # backing off after a failure for this same target


@dataclass(frozen=True)
class LastError:
    """An environment's last failed provision: its message, hint and kind, and when."""

    message: str
    hint: str | None
    kind: str
    at: float
    exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "hint": self.hint,
            "kind": self.kind,
            "at": self.at,
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True)
class EnvStatus:
    """One environment's status: its state, what is active and what for, its failures and retry."""

    name: str
    prefix: str
    state: EnvState = EnvState.PENDING
    backend: str | None = None
    torch: str | None = None
    python: str | None = None
    fingerprint: str | None = None  # host fingerprint the active environment was made for
    desired: str | None = None  # EnvironmentSpec.digest() it was made for
    last_verify: float | None = None
    last_error: LastError | None = None
    failures: int = 0  # consecutive failures for `failed_for`
    failed_for: tuple[str, str] | None = None
    next_retry: float | None = None
    provisions: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "state": self.state.value,
            "backend": self.backend,
            "torch": self.torch,
            "python": self.python,
            "fingerprint": self.fingerprint,
            "last_verify": self.last_verify,
            "last_error": self.last_error.to_json() if self.last_error else None,
            "failures": self.failures,
            "next_retry": self.next_retry,
            "provisions": dict(self.provisions),
        }


def backoff(failures: int, initial: float, maximum: float) -> float:
    """Seconds to wait after `failures` consecutive failures: doubling, bounded."""
    if failures <= 0:
        return 0.0
    return float(min(maximum, initial * 2 ** min(failures - 1, 30)))


def decide(
    status: EnvStatus, fingerprint: str, desired: str, *, prefix_ok: bool, now: float, forced: bool
) -> Action:
    """What to do with one environment for this host (pure)."""
    if status.fingerprint == fingerprint and status.desired == desired and prefix_ok:
        return Action.KEEP
    waiting = (
        status.failed_for == (fingerprint, desired)
        and status.next_retry is not None
        and now < status.next_retry
    )
    if waiting and not forced:
        return Action.WAIT
    return Action.PROVISION


def after_success(
    status: EnvStatus,
    *,
    fingerprint: str,
    desired: str,
    backend: str | None,
    torch: str | None,
    python: str | None,
    now: float,
) -> EnvStatus:
    counts = {**status.provisions, "ok": status.provisions.get("ok", 0) + 1}
    return replace(
        status,
        state=EnvState.ACTIVE,
        backend=backend,
        torch=torch,
        python=python,
        fingerprint=fingerprint,
        desired=desired,
        last_verify=now,
        last_error=None,
        failures=0,
        failed_for=None,
        next_retry=None,
        provisions=counts,
    )


def after_failure(
    status: EnvStatus, error: LastError, *, target: tuple[str, str], initial: float, maximum: float
) -> EnvStatus:
    failures = status.failures + 1 if status.failed_for == target else 1
    counts = {**status.provisions, "failed": status.provisions.get("failed", 0) + 1}
    return replace(
        status,
        state=EnvState.FAILED,
        last_error=error,
        failures=failures,
        failed_for=target,
        next_retry=error.at + backoff(failures, initial, maximum),
        provisions=counts,
    )


PERSISTED = ("backend", "torch", "python", "fingerprint", "desired", "last_verify", "provisions")


def save_state(path: Path, statuses: dict[str, EnvStatus]) -> None:
    """What each environment was last provisioned for, written atomically."""
    data = {
        "version": 1,
        "environments": {
            name: {key: getattr(s, key) for key in PERSISTED} | {"prefix": s.prefix}
            for name, s in statuses.items()
            if s.fingerprint is not None
        },
    }
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_state(path: Path, status: EnvStatus) -> EnvStatus:
    """`status` with what a previous run recorded for the same name and prefix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return status
    except (OSError, ValueError):
        return status  # unreadable state only costs one provision (auto's no-op path)
    entry = data.get("environments", {}).get(status.name) if isinstance(data, dict) else None
    if not isinstance(entry, dict) or entry.get("prefix") != status.prefix:
        return status
    values = {k: entry.get(k) for k in PERSISTED}
    if not all(isinstance(values[k], str) for k in ("fingerprint", "desired")):
        return status
    last_verify = values["last_verify"]
    return replace(
        status,
        backend=_str(values["backend"]),
        torch=_str(values["torch"]),
        python=_str(values["python"]),
        fingerprint=values["fingerprint"],
        desired=values["desired"],
        last_verify=float(last_verify) if isinstance(last_verify, (int, float)) else None,
        provisions=_counts(values["provisions"], status.provisions),
    )


def _counts(value: Any, default: dict[str, int]) -> dict[str, int]:
    """The provision counters a previous run recorded (they count across restarts)."""
    if not isinstance(value, dict):
        return default
    return {
        key: n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else default[key]
        for key, n in ((k, value.get(k)) for k in default)
    }


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Durably replace `path` with `text`: readers see the old or the new file."""
    write_atomic(path, text.encode("utf-8"), fsync=True, mode=mode)
