"""The shipped data files, and the device code in them: SASS/PTX per CUDA build, gfx per ROCm."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent.parent / "data"


def read_data(name: str) -> dict[str, Any]:
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@dataclass(frozen=True)
class _ArchRow:
    """One CUDA build's device code (SASS, PTX) for torch `low`..`high` on `platforms`."""

    backend: str
    low: str | None
    high: str | None
    platforms: tuple[str, ...]
    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    inferred: bool


def _arch_rows(cuda: Mapping[str, Any]) -> tuple[_ArchRow, ...]:
    return tuple(
        _ArchRow(
            row["backend"],
            row["releases"][0],
            row["releases"][1],
            tuple(row["platforms"]),
            tuple(row["sass"]),
            tuple(row["ptx"]),
            bool(row.get("inferred")),
        )
        for row in cuda["builds"]
    )


@dataclass(frozen=True)
class Facts:
    """The device code the shipped data lists, for building (and borrowing) catalog rows."""

    arch: tuple[_ArchRow, ...]
    gfx: Mapping[str, tuple[tuple[str, ...], bool]]


@functools.cache  # the catalog and the rows an index adds both ask: the files parsed once
def load_facts() -> Facts:
    cuda, rocm = read_data("cuda.json"), read_data("rocm.json")
    return Facts(
        arch=_arch_rows(cuda),
        gfx={b["backend"]: (tuple(b["gfx"]), bool(b.get("inferred"))) for b in rocm["builds"]},
    )
