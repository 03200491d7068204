"""Metadata by ranges where the tail does not settle it: the directory's part, false starts."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from indexsim import Catalog, Hosted, IndexSim, WheelSpec, build_site, metadata_text

from torchenv.agent.index.client import IndexClient
from torchenv.agent.index.ranges import TAIL_BYTES
from torchenv.agent.index.zipmeta import CENTRAL, MAX_FALSE_STARTS, members_in_part

MANY = {f"odd/module_{i:04d}.py": f"X = {i}\n" for i in range(3000)}


def directory_of(names: list[str]) -> bytes:
    """The central directory of a zip holding these (empty) members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in names:
            zf.writestr(name, b"")
    data = buf.getvalue()
    size, offset = struct.unpack("<2I", data[-10:-2])
    return data[offset : offset + size]


@pytest.mark.parametrize("false_starts", [0, 1, MAX_FALSE_STARTS])
def test_a_directory_part_is_found_past_a_few_false_starts(false_starts: int) -> None:
    """Signatures that chain nowhere (inside a cut entry, a name) are stepped over."""
    directory = directory_of(["a/x.py", "a-1.0.dist-info/METADATA", "a-1.0.dist-info/RECORD"])
    part = (CENTRAL + b"x" * 42) * false_starts + directory
    found = members_in_part(part)
    assert found is not None
    assert [m.name for m in found] == [
        "a/x.py",
        "a-1.0.dist-info/METADATA",
        "a-1.0.dist-info/RECORD",
    ]
    assert [m.name for m in members_in_part(part, b".dist-info/METADATA") or []] == [
        "a-1.0.dist-info/METADATA"
    ]


def test_too_many_false_starts_give_up() -> None:
    directory = directory_of(["a-1.0.dist-info/METADATA"])
    assert members_in_part((CENTRAL + b"x" * 42) * (MAX_FALSE_STARTS + 1) + directory) is None
    assert members_in_part(b"no signature at all") is None
    assert members_in_part(directory[5:]) is None  # cut inside the only entry


def served(tmp_path: Path, spec: WheelSpec) -> IndexSim:
    site = build_site(Catalog((Hosted("pytorch", "", "cu126", spec, pep658=False),)), tmp_path)
    return IndexSim(site)


def read_metadata(sim: IndexSim, spec: WheelSpec) -> tuple[str, list[str | None]]:
    with IndexClient() as client:
        (art,) = client.project_page(sim.torch_index_url + "/cu126", spec.name)
        meta = client.metadata(art)
    return meta.raw, [r.range for r in sim.requests("*.whl")]


def test_metadata_entry_outside_the_tail_reads_only_the_rest_of_the_directory(
    tmp_path: Path,
) -> None:
    """METADATA written first: its directory entry is not in the tail, so the part of the
    directory before the tail is read (only that part), then the member."""
    spec = WheelSpec("odd", "1.0", "py3-none-any", files=MANY, metadata_first=True)
    with served(tmp_path, spec) as sim:
        raw, ranges = read_metadata(sim, spec)
        size = sim.site.files[spec.filename].size
    with zipfile.ZipFile(sim.site.files[spec.filename].path) as zf:
        start_dir = zf.start_dir
        member_at = zf.getinfo(f"{spec.dist_info}/METADATA").header_offset
    assert raw == metadata_text(spec)
    assert size - start_dir > TAIL_BYTES  # the directory begins before the tail
    assert ranges == [
        f"bytes=-{TAIL_BYTES}",
        f"bytes={start_dir}-{size - TAIL_BYTES - 1}",
        ranges[2],
    ]
    assert ranges[2] is not None and ranges[2].startswith(f"bytes={member_at}-")


def test_names_holding_the_signature_cost_no_extra_read(tmp_path: Path) -> None:
    """Every name carries the central-header signature (false starts wherever the tail cuts
    the directory): the chained entries are still found, and the member is the second read."""
    files = {f"odd/{'PK' + chr(1) + chr(2)}{i:04d}.py": "X = 1\n" for i in range(3000)}
    spec = WheelSpec("odd", "1.0", "py3-none-any", requires_dist=("attrs",), files=files)
    with served(tmp_path, spec) as sim:
        raw, ranges = read_metadata(sim, spec)
    assert raw == metadata_text(spec)
    assert len(ranges) == 2
