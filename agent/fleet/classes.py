"""Hosts grouped into classes by target fingerprint, and one lock made for each (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import TorchenvError

if TYPE_CHECKING:
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.probes.report import HostReport


@dataclass(frozen=True)
class NamedHost:
    """One input host: its name (the file or directory it came from) and its report."""

    name: str
    report: HostReport


@dataclass(frozen=True)
class HostClass:
    """Hosts with one target fingerprint: one lock serves them all."""

    fingerprint: str
    report: HostReport  # the first host of the class: the lock is made for it
    hosts: tuple[str, ...]

    @property
    def target(self) -> dict[str, Any]:
        return self.report.target_facts()


def classes_of(hosts: Iterable[NamedHost]) -> tuple[HostClass, ...]:
    """The classes of the hosts, in the order their first host was given."""
    members: dict[str, list[NamedHost]] = {}
    for host in hosts:
        members.setdefault(host.report.fingerprint(), []).append(host)
    return tuple(
        HostClass(fingerprint, named[0].report, tuple(h.name for h in named))
        for fingerprint, named in members.items()
    )


@dataclass(frozen=True)
class ClassLock:
    """What locking one class gave: its lock, or the error that stopped it."""

    host_class: HostClass
    lock: PyLock | None = None
    error: TorchenvError | None = None


def lock_each(
    classes: Sequence[HostClass], locker: Callable[[HostReport], PyLock], reporter: Reporter
) -> list[ClassLock]:
    """One resolution per class; an error in one class is kept and the others go on."""
    results = []
    for number, host_class in enumerate(classes, 1):
        reporter.info(
            f"class {number}/{len(classes)} {host_class.fingerprint} "
            f"({len(host_class.hosts)} host{'s' if len(host_class.hosts) != 1 else ''})"
        )
        try:
            results.append(ClassLock(host_class, lock=locker(host_class.report)))
        except TorchenvError as exc:
            reporter.warning(f"class {host_class.fingerprint}: {exc.message}")
            results.append(ClassLock(host_class, error=exc))
    return results
