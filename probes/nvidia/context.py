"""One NVIDIA probe run: the host behind it, its limits and the reasons gathered on the way."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torchenv.probes.hostio import CommandResult, HostIO, list_optional, read_optional
from torchenv.probes.report import NvidiaReport


@dataclass(frozen=True)
class Found:
    """A detection path's answer before visibility and overrides."""

    report: NvidiaReport
    mig_devices: Mapping[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass
class ProbeRun:
    """One probe run: the host, its limits, and the reasons gathered on the way."""

    io: HostIO
    timeout: float
    container: str | None
    notes: list[str] = dataclasses.field(default_factory=list)
    smi_dead: bool = False  # nvidia-smi hung or is absent: do not ask it again

    def done(
        self, report: NvidiaReport, migs: Mapping[int, tuple[str, ...]] | None = None
    ) -> Found:
        return Found(
            dataclasses.replace(report, reasons=report.reasons + tuple(self.notes)), migs or {}
        )

    def read(self, path: str) -> str | None:
        text, problem = read_optional(self.io, path)
        if problem:
            self.notes.append(problem)
        return text

    def listing(self, path: str) -> list[str]:
        """The directory's entries; [] when it is missing, [] and a reason when unreadable."""
        names, problem = list_optional(self.io, path)
        if problem:
            self.notes.append(problem)
        return names

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        """A command's result when it succeeded; None (and a reason) otherwise."""
        result = self.io.run(argv, self.timeout)
        if result.ok:
            return result
        name = argv[0].rsplit("/", 1)[-1]
        if result.error == "timeout":
            self.notes.append(f"{name}: no answer within {self.timeout:g} s")
        elif result.error == "not-found":
            self.notes.append(f"{name}: not found")
        elif result.error:
            self.notes.append(f"{name}: {result.error}")
        else:
            first = (result.stdout.strip() or result.stderr.strip()).splitlines()[:1]
            self.notes.append(
                f"{name}: exit {result.returncode}" + (f": {first[0][:160]}" if first else "")
            )
        if name == "nvidia-smi" and result.error in ("timeout", "not-found"):
            self.smi_dead = True
        return None
