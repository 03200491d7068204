"""Builds real wheel files (zip with METADATA, WHEEL, RECORD and hashes) for the index simulator."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

FIXED_DATE = (2025, 1, 1, 0, 0, 0)
PADDING_CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelSpec:
    """One wheel to build: its name, version, tag and the metadata it carries."""

    name: str
    version: str
    tag: str  # e.g. "cp311-cp311-manylinux_2_28_x86_64" (compressed tag sets allowed)
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    summary: str = "Test double built by torchenv's index simulator"
    files: Mapping[str, str] = field(default_factory=dict)  # archive path -> text
    padding: int = 0  # bytes of a stored filler member, to give the wheel a realistic size
    metadata_compression: int = zipfile.ZIP_DEFLATED
    force_zip64: bool = False  # write zip64 end records (as wheels over 4 GiB have)
    metadata_first: bool = False  # .dist-info METADATA and WHEEL before the files (RECORD last)

    @property
    def filename(self) -> str:
        return f"{_dist(self.name)}-{self.version}-{self.tag}.whl"

    @property
    def dist_info(self) -> str:
        return f"{_dist(self.name)}-{self.version}.dist-info"

    @property
    def project(self) -> str:
        return canonicalize_name(self.name)


def _dist(name: str) -> str:
    """The distribution part of a file name (PEP 427 escaping)."""
    return canonicalize_name(name).replace("-", "_")


def metadata_text(spec: WheelSpec) -> str:
    """The core metadata (METADATA) of a wheel."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Summary: {spec.summary}",
    ]
    if spec.requires_python:
        lines.append(f"Requires-Python: {spec.requires_python}")
    lines += [f"Requires-Dist: {req}" for req in spec.requires_dist]
    return "\n".join(lines) + "\n\n"


def wheel_text(spec: WheelSpec) -> str:
    pure = spec.tag.endswith("-none-any")
    interpreters, abis, platforms = spec.tag.split("-")
    tags = [
        f"{i}-{a}-{p}"
        for i in interpreters.split(".")
        for a in abis.split(".")
        for p in platforms.split(".")
    ]
    head = [
        "Wheel-Version: 1.0",
        "Generator: torchenv-indexsim",
        f"Root-Is-Purelib: {'true' if pure else 'false'}",
    ]
    return "\n".join(head + [f"Tag: {t}" for t in tags]) + "\n"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _padding_member(spec: WheelSpec) -> str:
    return f"{_dist(spec.name)}-{spec.version}.data/data/indexsim-padding.bin"


def build_wheel(spec: WheelSpec, dest_dir: Path) -> Path:
    """Write the wheel into dest_dir (streaming the padding) and return its path.

    Layout follows real wheels: payload first, the .dist-info members last (RECORD
    the very last), so METADATA sits just before the central directory (`metadata_first`:
    METADATA and WHEEL first, as a few tools write them).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / spec.filename
    tmp = path.with_name(path.name + ".tmp")
    records: list[str] = []
    with zipfile.ZipFile(tmp, "w") as zf:
        if spec.padding:
            records.append(_write_padding(zf, spec))
        dist_info = {
            f"{spec.dist_info}/METADATA": metadata_text(spec),
            f"{spec.dist_info}/WHEEL": wheel_text(spec),
        }
        members = (
            {**dist_info, **spec.files} if spec.metadata_first else {**spec.files, **dist_info}
        )
        for name, text in members.items():
            data = text.encode()
            compression = (
                spec.metadata_compression if name.endswith("/METADATA") else zipfile.ZIP_DEFLATED
            )
            info = zipfile.ZipInfo(name, FIXED_DATE)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=spec.force_zip64) as out:
                out.write(data)
            records.append(f"{name},{_record_hash(data)},{len(data)}")
        record_name = f"{spec.dist_info}/RECORD"
        records.append(f"{record_name},,")
        info = zipfile.ZipInfo(record_name, FIXED_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        if spec.force_zip64:
            _force_zip64_end_record(zf)
        zf.writestr(info, "\n".join(records) + "\n")
    tmp.replace(path)
    return path


def _write_padding(zf: zipfile.ZipFile, spec: WheelSpec) -> str:
    name = _padding_member(spec)
    info = zipfile.ZipInfo(name, FIXED_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = spec.padding
    digest = hashlib.sha256()
    chunk = bytes(min(PADDING_CHUNK, spec.padding))
    left = spec.padding
    with zf.open(info, "w", force_zip64=spec.force_zip64) as out:
        while left:
            piece = chunk[: min(left, len(chunk))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    encoded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    return f"{name},sha256={encoded},{spec.padding}"


def _force_zip64_end_record(zf: zipfile.ZipFile) -> None:
    """Make zipfile write the zip64 end-of-central-directory record for this archive."""
    original = zf._write_end_record  # type: ignore[attr-defined]

    def write_end_record() -> None:
        saved = zipfile.ZIP_FILECOUNT_LIMIT
        zipfile.ZIP_FILECOUNT_LIMIT = 0  # type: ignore[misc]
        try:
            original()
        finally:
            zipfile.ZIP_FILECOUNT_LIMIT = saved  # type: ignore[misc]

    zf._write_end_record = write_end_record  # type: ignore[attr-defined]


def build_sdist(name: str, version: str, dest_dir: Path) -> Path:
    """A minimal sdist (.tar.gz with PKG-INFO) so pages list non-wheel files too."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    base = f"{_dist(name)}-{version}"
    path = dest_dir / f"{base}.tar.gz"
    pkg_info = metadata_text(WheelSpec(name, version, "py3-none-any")).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        info.mtime = 1735689600
        tar.addfile(info, io.BytesIO(pkg_info))
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
