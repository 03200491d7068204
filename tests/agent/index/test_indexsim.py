"""The index simulator itself: real wheels, the catalog's quirks, ranges, faults and counters."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from indexsim import Fault, IndexSim, Site, WheelSpec, build_wheel, default_catalog

JSON = "application/vnd.pypi.simple.v1+json"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_every_wheel_is_valid_with_a_matching_record(indexsim_site: Site) -> None:
    wheels = [f for f in indexsim_site.files.values() if f.filename.endswith(".whl")]
    assert len(wheels) > 300
    for site_file in wheels:
        with zipfile.ZipFile(site_file.path) as zf:
            assert zf.testzip() is None
            names = zf.namelist()
            (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
            rows = [line.split(",") for line in zf.read(record).decode().splitlines()]
            assert {row[0] for row in rows} == set(names)
            for name, digest, size in rows:
                if name != record:
                    data = zf.read(name)
                    assert (digest, size) == (record_hash(data), str(len(data))), name
            metadata = zf.read(record.replace("RECORD", "METADATA"))
            assert metadata == site_file.metadata
            assert b"Test double" in metadata


def test_padding_is_stored_and_recorded(tmp_path: Path) -> None:
    spec = WheelSpec("padded", "1.0", "py3-none-any", padding=3_000_000)
    path = build_wheel(spec, tmp_path)
    assert 3_000_000 < path.stat().st_size < 3_010_000
    with zipfile.ZipFile(path) as zf:
        pad = next(i for i in zf.infolist() if i.filename.endswith("indexsim-padding.bin"))
        assert pad.compress_type == zipfile.ZIP_STORED and pad.file_size == 3_000_000
        assert zf.namelist()[-1].endswith(".dist-info/RECORD")  # metadata at the end
        assert zf.testzip() is None


@pytest.mark.parametrize(
    ("filename", "version", "cuda", "arch"),
    [
        ("torch-2.7.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl", "2.7.0+cu126", "12.6", "sm_50"),
        (
            "torch-2.9.0+cu130-cp311-cp311-manylinux_2_28_x86_64.whl",
            "2.9.0+cu130",
            "13.0",
            "sm_120",
        ),
        ("torch-2.9.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "2.9.0+cpu", None, None),
        ("torch-2.9.0-cp311-cp311-macosx_11_0_arm64.whl", "2.9.0", None, None),
    ],
)
def test_torch_stub_reports_its_build(
    indexsim_site: Site, filename: str, version: str, cuda: str | None, arch: str | None
) -> None:
    wheel = indexsim_site.files[filename].path
    code = (
        "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, "
        "torch.version.hip, torch.cuda.is_available(), torch.cuda.get_arch_list(), "
        "torch.TEST_DOUBLE]))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(wheel)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    got_version, got_cuda, hip, available, arch_list, double = json.loads(out.stdout)
    assert (got_version, got_cuda, hip, available, double) == (version, cuda, None, False, True)
    assert (arch in arch_list) if arch else arch_list == []


def test_catalog_quirks() -> None:
    catalog = default_catalog()
    by_place: dict[tuple[str, str, str], set[str]] = {}
    for h in catalog.files:
        by_place.setdefault((h.index, h.channel, h.project), set()).add(h.variant)
    assert ("pytorch", "nightly", "pytorch-triton") in by_place
    assert not any(
        p == "pytorch-triton" for (i, c, p) in by_place if (i, c) != ("pytorch", "nightly")
    )
    assert ("pypi", "", "triton") in by_place
    assert ("pytorch", "", "triton") not in by_place
    assert by_place[("pytorch", "", "torch")] == {"cpu", "cu118", "cu126", "cu128", "cu130"}
    assert by_place[("pytorch", "nightly", "torch")] == {"cu126"}
    assert {"cu126", "cu130"} <= by_place[("pytorch", "", "nvidia-cublas-cu12")] | by_place[
        ("pytorch", "", "nvidia-cublas")
    ]
    vision_pins = {
        req
        for h in catalog.files
        if h.wheel and h.project == "torchvision" and h.channel == ""
        for req in h.wheel.requires_dist
        if req.startswith("torch==")
    }
    assert vision_pins == {"torch==2.7.0", "torch==2.9.0"}


def test_pages_by_accept_header(indexsim: IndexSim) -> None:
    json_page = httpx.get(indexsim.pypi_url + "/certifi/", headers={"Accept": JSON})
    html_page = httpx.get(indexsim.pypi_url + "/certifi/", headers={"Accept": "text/html"})
    torch_page = httpx.get(indexsim.torch_index_url + "/cu126/certifi/", headers={"Accept": JSON})
    assert json_page.headers["content-type"] == JSON and json_page.json()["name"] == "certifi"
    assert (
        html_page.headers["content-type"] == "text/html"
        and "data-requires-python" in html_page.text
    )
    assert torch_page.headers["content-type"] == "text/html"  # the PyTorch index has no JSON
    assert "data-requires-python" not in torch_page.text and "#sha256=" in torch_page.text
    assert httpx.get(indexsim.pypi_url + "/Typing_Extensions/").status_code == 200
    assert httpx.get(indexsim.torch_index_url + "/cu126/no-such-project/").status_code == 404


def test_ranges_and_refusal(indexsim: IndexSim) -> None:
    filename = "certifi-2025.8.3-py3-none-any.whl"
    url = indexsim.file_url(filename)
    data = indexsim.site.files[filename].path.read_bytes()
    part = httpx.get(url, headers={"Range": "bytes=-100"})
    assert part.status_code == 206 and part.content == data[-100:]
    assert part.headers["content-range"] == f"bytes {len(data) - 100}-{len(data) - 1}/{len(data)}"
    mid = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert mid.content == data[10:20]
    assert httpx.get(url, headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    indexsim.knobs.ranges = False
    whole = httpx.get(url, headers={"Range": "bytes=-100"})
    assert whole.status_code == 200 and whole.content == data
    assert indexsim.bytes_sent("*.whl") == 100 + 10 + len(data)


def test_metadata_files_follow_the_catalog(indexsim: IndexSim) -> None:
    base = indexsim.torch_index_url
    offered = base + "/cu126/torch-2.9.0%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl.metadata"
    absent = base + "/cu118/torch-2.7.0%2Bcu118-cp311-cp311-manylinux_2_28_x86_64.whl.metadata"
    assert httpx.get(offered).status_code == 200
    assert httpx.get(absent).status_code == 404
    indexsim.knobs.pep658 = False
    assert httpx.get(offered).status_code == 404
    assert "data-dist-info-metadata" not in httpx.get(base + "/cu126/torch/").text


def test_faults_and_counters(indexsim: IndexSim) -> None:
    page = indexsim.pypi_url + "/certifi/"
    indexsim.inject(Fault("status", "/simple/certifi/", times=1, status=502))
    assert httpx.get(page).status_code == 502
    assert httpx.get(page).status_code == 200
    indexsim.inject(Fault("reset", "/simple/certifi/"))
    with pytest.raises(httpx.TransportError):
        httpx.get(page)
    indexsim.inject(Fault("truncate", "/simple/certifi/"))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(page)
    assert [r.status for r in indexsim.requests("/simple/*")] == [502, 200, -1, 200]
    assert indexsim.count("/simple/certifi/") == 4
    indexsim.reset_counters()
    assert indexsim.count() == 0


def test_conditional_requests(indexsim: IndexSim) -> None:
    page = indexsim.pypi_url + "/certifi/"
    indexsim.knobs.page_cache_control = "max-age=60"
    first = httpx.get(page)
    assert first.headers["cache-control"] == "max-age=60"
    again = httpx.get(page, headers={"If-None-Match": first.headers["etag"]})
    since = httpx.get(page, headers={"If-Modified-Since": first.headers["last-modified"]})
    assert (again.status_code, since.status_code) == (304, 304)
    assert indexsim.bytes_sent("/simple/*") == len(first.content)


def test_requests_record_arrival_answer_and_user_agent(indexsim: IndexSim) -> None:
    indexsim.knobs.latency = 0.15
    pages = [indexsim.pypi_url + f"/{p}/" for p in ("certifi", "idna", "urllib3")]
    with httpx.Client(headers={"User-Agent": "probe/1"}) as client:
        client.get(pages[0])  # one round trip, then two at once: two round trips
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(client.get, pages[1:]))
    first, *together = indexsim.requests()
    assert {r.user_agent for r in indexsim.requests()} == {"probe/1"}
    assert all(r.answered - r.arrived >= 0.15 for r in indexsim.requests())
    assert together[0].overlaps(together[1]) and together[1].overlaps(together[0])
    assert not first.overlaps(together[0]) and not first.overlaps(together[1])
    assert indexsim.round_trips() == 2
    assert indexsim.round_trips("/simple/certifi/") == 1
