"""Metadata-only stand-in wheels: the real METADATA of a chosen wheel, nothing to install."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from packaging.utils import parse_wheel_filename

_FIXED_DATE = (2020, 1, 1, 0, 0, 0)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_standin(directory: Path, filename: str, metadata: bytes) -> Path:
    """A wheel named `filename` holding only `metadata`; resolvers read it, nobody installs it.

    `filename` comes from an index page: it must be a plain file name (Escapes otherwise).
    """
    from torchenv.agent.base.fsutil import file_name

    _, _, _, tags = parse_wheel_filename(file_name(filename))
    dist, version = filename.split("-")[:2]
    dist_info = f"{dist}-{version}.dist-info"
    wheel = (
        "Wheel-Version: 1.0\nGenerator: torchenv (stand-in)\nRoot-Is-Purelib: false\n"
        + "".join(f"Tag: {t}\n" for t in sorted(str(t) for t in tags))
    ).encode()
    members = {f"{dist_info}/METADATA": metadata, f"{dist_info}/WHEEL": wheel}
    record = "".join(_record_line(p, d) + "\n" for p, d in members.items())
    record += f"{dist_info}/RECORD,,\n"
    members[f"{dist_info}/RECORD"] = record.encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=_FIXED_DATE), data)
    return path


def direct_reference(name: str, extras: frozenset[str], path: Path) -> str:
    """`name[extras] @ file:///…` for a stand-in."""
    extra = f"[{','.join(sorted(extras))}]" if extras else ""
    return f"{name}{extra} @ {path.resolve().as_uri()}"
