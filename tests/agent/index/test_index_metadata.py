"""Core metadata: PEP 658 files, range reads of the wheel's zip, and the whole-file fallback."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest
from indexsim import IndexSim, Site, WheelSpec, metadata_text
from indexsim.focus import FOCUS_PADDING, FOCUS_WHEELS
from packaging.version import Version

from torchenv.agent.base.errors import IndexError_, IntegrityError
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.index.client import IndexClient
from torchenv.agent.index.model import Artifact
from torchenv.agent.index.pages import make_artifact
from torchenv.agent.index.ranges import TAIL_BYTES


def torch_cu126(sim: IndexSim) -> str:
    return sim.torch_index_url + "/cu126"


def artifact(client: IndexClient, index: str, project: str) -> Artifact:
    (found,) = client.project_page(index, project)
    return found


@pytest.mark.parametrize("spec", FOCUS_WHEELS, ids=lambda s: s.name)
def test_metadata_by_ranges_matches_the_wheel(focus_sim: IndexSim, spec: WheelSpec) -> None:
    """No PEP 658 file on this index: the METADATA member is read with range requests."""
    with IndexClient() as client:
        art = artifact(client, torch_cu126(focus_sim), spec.name)
        assert art.core_metadata is False
        meta = client.metadata(art)
    assert meta.raw == metadata_text(spec)
    assert meta.version == Version(spec.version)
    assert [str(r) for r in meta.requires_dist] == list(spec.requires_dist)
    fetched = focus_sim.requests(f"/whl/cu126/*{art.filename}*")
    assert fetched and all(r.range and r.status == 206 for r in fetched)
    assert client.stats.by_kind["range"].requests == len(fetched)
    size = focus_sim.site.files[spec.filename].size
    if size > TAIL_BYTES:
        with zipfile.ZipFile(focus_sim.site.files[spec.filename].path) as zf:
            directory_and_end = size - zf.start_dir
            member_at = zf.getinfo(f"{spec.dist_info}/METADATA").header_offset
        if spec.name == "demo-many":  # the directory begins before the tail, METADATA's entry
            # is in it: the tail, then the member alone (the rest of the directory is not read)
            assert directory_and_end > TAIL_BYTES
            assert [r.range for r in fetched][1].startswith(f"bytes={member_at}-")  # type: ignore[union-attr]
        assert len(fetched) == (2 if spec.name == "demo-many" else 1)
        # bounded by the central directory plus a fixed amount, never the payload
        assert sum(r.bytes_sent for r in fetched) <= directory_and_end + TAIL_BYTES + 4096


def test_stored_and_deflated_members_are_really_there(focus_site: Site) -> None:
    """Guard the fixture: the two wheels do exercise both compression methods."""
    methods = {}
    for spec in FOCUS_WHEELS[:2]:
        with zipfile.ZipFile(focus_site.files[spec.filename].path) as zf:
            methods[spec.name] = zf.getinfo(f"{spec.dist_info}/METADATA").compress_type
    assert methods == {"demo": zipfile.ZIP_DEFLATED, "demo-stored": zipfile.ZIP_STORED}


def test_padded_wheel_metadata_costs_under_one_percent(focus_sim: IndexSim) -> None:
    spec = FOCUS_WHEELS[-1]
    size = focus_sim.site.files[spec.filename].size
    assert size > FOCUS_PADDING
    with IndexClient() as client:
        meta = client.metadata(artifact(client, torch_cu126(focus_sim), "bigtorch"))
    assert [str(r) for r in meta.requires_dist] == ["nvidia-cublas-cu12==12.6.4.1"]
    sent = focus_sim.bytes_sent("*.whl")
    assert 0 < sent < size / 100
    assert client.stats.bytes_fetched < size / 100


def test_timeouts_are_retried_then_reported(focus_sim: IndexSim) -> None:
    focus_sim.knobs.latency = 1.0
    client = IndexClient(timeout=0.2, retries=1, backoff=0.01)
    with client, pytest.raises(IndexError_) as caught:
        client.project_page(focus_sim.pypi_url, "demo")
    assert "Timeout" in caught.value.message
    assert client.stats.retries == 1


def test_pep658_file_is_used_when_offered(focus_sim: IndexSim) -> None:
    with IndexClient() as client:
        art = artifact(client, focus_sim.pypi_url, "bigtorch")
        meta = client.metadata(art)
    assert meta.name == "bigtorch"
    assert focus_sim.count("*.whl") == 0
    assert focus_sim.count("*.whl.metadata", status=200) == 1


def test_pep658_wrong_hash_is_refused(focus_sim: IndexSim) -> None:
    spec = FOCUS_WHEELS[0]
    focus_sim.knobs.wrong_hash.add(spec.filename + ".metadata")
    with IndexClient() as client:
        art = artifact(client, focus_sim.pypi_url, "demo")
        with pytest.raises(IntegrityError) as caught:
            client.metadata(art)
    assert art.metadata_url in caught.value.message


def test_advertised_metadata_missing_falls_back_to_ranges(focus_sim: IndexSim) -> None:
    with IndexClient() as client:
        art = artifact(client, focus_sim.pypi_url, "demo")
        focus_sim.knobs.pep658 = False  # the page promised a .metadata file; it is gone now
        meta = client.metadata(art)
    assert meta.name == "demo"
    assert focus_sim.count("*.whl.metadata", status=404) == 1
    assert focus_sim.count("*.whl", status=206) >= 1


def test_ranges_refused_downloads_whole_wheel_with_a_warning(focus_sim: IndexSim) -> None:
    focus_sim.knobs.ranges = False
    reporter = RecordingReporter()
    spec = FOCUS_WHEELS[-1]
    with IndexClient(reporter=reporter) as client:
        meta = client.metadata(artifact(client, torch_cu126(focus_sim), "bigtorch"))
    assert meta.raw == metadata_text(spec)
    warnings = [e for e in reporter.events if e[0] == "warning"]
    assert len(warnings) == 1 and "range requests" in warnings[0][1]
    assert focus_sim.bytes_sent("*.whl") == focus_sim.site.files[spec.filename].size
    assert focus_sim.count("*.whl") == 1  # the 200 answer itself was used, not a second GET


def test_ranges_refused_still_checks_the_hash(focus_sim: IndexSim) -> None:
    focus_sim.knobs.ranges = False
    focus_sim.knobs.wrong_hash.add(FOCUS_WHEELS[0].filename)
    with IndexClient() as client, pytest.raises(IntegrityError):
        client.metadata(artifact(client, torch_cu126(focus_sim), "demo"))


def test_metadata_differs_per_wheel_of_one_version(indexsim: IndexSim) -> None:
    """The cu126 aarch64 wheel of torch 2.9.0 lists no nvidia-* requirement; x86_64 does."""
    with IndexClient() as client:
        arts = client.project_page(torch_cu126(indexsim), "torch")
        picked = {
            plat: next(
                a
                for a in arts
                if str(a.version) == "2.9.0+cu126"
                and any(t.interpreter == "cp311" and t.platform.endswith(plat) for t in a.tags)
            )
            for plat in ("x86_64", "aarch64")
        }
        metas = dict(zip(picked, client.metadata_many(list(picked.values())), strict=True))
    nvidia = {
        plat: sorted(r.name for r in m.requires_dist if r.name.startswith("nvidia-"))
        for plat, m in metas.items()
    }
    assert nvidia["x86_64"] == [
        "nvidia-cublas-cu12",
        "nvidia-cuda-runtime-cu12",
        "nvidia-cudnn-cu12",
    ]
    assert nvidia["aarch64"] == []


def test_nightly_metadata_needs_pytorch_triton(indexsim: IndexSim) -> None:
    with IndexClient() as client:
        arts = client.project_page(indexsim.torch_index_url + "/nightly/cu126", "torchvision")
        meta = client.metadata(arts[0])
        torch_meta = client.metadata(
            client.project_page(indexsim.torch_index_url + "/nightly/cu126", "torch")[0]
        )
    (pin,) = [r for r in meta.requires_dist if r.name == "torch"]
    assert str(pin.specifier).startswith("==2.9.0.dev") and str(pin.specifier).endswith("+cu126")
    assert "pytorch-triton" in {r.name for r in torch_meta.requires_dist}


def test_metadata_many_runs_concurrently(indexsim: IndexSim) -> None:
    with IndexClient(concurrency=4) as client:
        arts = client.project_page(indexsim.torch_index_url + "/cu118", "torch")
        indexsim.knobs.latency = 0.1
        metas = client.metadata_many(arts)
    assert [str(m.version) for m in metas] == [str(a.version) for a in arts]
    assert indexsim.max_in_flight > 1


def test_sdist_metadata_is_a_clear_error(indexsim: IndexSim) -> None:
    with IndexClient() as client:
        sdist = next(a for a in client.project_page(indexsim.pypi_url, "mpmath") if not a.is_wheel)
        with pytest.raises(IndexError_) as caught:
            client.metadata(sdist)
    assert "not a wheel" in caught.value.message and caught.value.hint


def test_missing_wheel_is_an_index_error_without_retries(focus_sim: IndexSim) -> None:
    art = make_artifact("demo", focus_sim.url + "/whl/cu126/demo-9.9-py3-none-any.whl")
    with IndexClient() as client, pytest.raises(IndexError_) as caught:
        client.metadata(art)
    assert art.url in caught.value.message and "404" in caught.value.message
    assert focus_sim.count("*.whl") == 1


def test_not_a_zip_is_an_index_error() -> None:
    """A server that answers ranges with bytes that are no zip (an HTML error page)."""
    junk = b"<html>" + b"x" * 5000 + b"</html>"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            206, content=junk, headers={"Content-Range": f"bytes 0-{len(junk) - 1}/{len(junk)}"}
        )

    art = make_artifact("demo", "http://mirror.invalid/demo-1.0-py3-none-any.whl")
    transport = httpx.MockTransport(handler)
    with IndexClient(transport=transport) as client, pytest.raises(IndexError_) as caught:
        client.metadata(art)
    assert "not a readable wheel" in caught.value.message


def test_the_whole_file_get_after_a_refused_range_is_retried() -> None:
    """416 to the range, then a 503 to the plain GET: retried like any other request."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(
            "demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
        )
    wheel = buffer.getvalue()
    plain_gets: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if "range" in request.headers:
            return httpx.Response(416)
        plain_gets.append(1)
        return httpx.Response(503) if len(plain_gets) == 1 else httpx.Response(200, content=wheel)

    art = make_artifact("demo", "http://mirror.invalid/demo-1.0-py3-none-any.whl")
    transport = httpx.MockTransport(handler)
    with IndexClient(transport=transport, backoff=0.01) as client:
        meta = client.metadata(art)
    assert meta.name == "demo" and len(plain_gets) == 2
    assert client.stats.retries == 1


def test_metadata_is_cached_on_disk(focus_sim: IndexSim, tmp_path: Path) -> None:
    with IndexClient(cache_dir=tmp_path) as client:
        art = artifact(client, torch_cu126(focus_sim), "demo")
        first = client.metadata(art)
    focus_sim.reset_counters()
    with IndexClient(cache_dir=tmp_path) as client:
        second = client.metadata(art)
    assert second == first
    assert focus_sim.count() == 0 and client.stats.cache_hits == 1
