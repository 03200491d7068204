"""The selection table: named hosts (described and replayed) and the build picked for each."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from helpers import HOSTS
from helpers.hosts import make_host

from torchenv.backends.catalog import Catalog, load_catalog
from torchenv.backends.select import Flag, Request, Selection, select
from torchenv.probes.report import HostReport, NvidiaState

CATALOG = load_catalog()
NOT_OK = None


@dataclass(frozen=True)
class Case:
    name: str
    host: HostReport | str  # a report, or the name of a recorded host under tests/hosts
    expect: tuple[str, str] | None  # (torch release, backend); None: nothing satisfies
    request: Request = field(default_factory=Request)
    flags: frozenset[Flag] = frozenset()


def nv(driver: str, *gpus: str, **kw: object) -> HostReport:
    return make_host(driver=driver, gpus=gpus, **kw)  # type: ignore[arg-type]


def req(*requirements: str, channel: str = "stable", backend: str | None = None) -> Request:
    return Request(requirements=requirements or ("torch",), channel=channel, backend=backend)


MVC, PTX, CCU, FORCED = (Flag.MINOR_VERSION_COMPAT, Flag.PTX_ONLY, Flag.CC_UNKNOWN, Flag.FORCED)

CASES = [
    # NVIDIA, old to new GPUs and drivers (Linux x86_64, Python 3.12 unless said)
    Case("kepler-k80-470", nv("470.82.01", "3.7", python="3.10"), ("2.7", "cu118"), flags={MVC}),
    Case("kepler-k40-sm35-470", nv("470.82.01", "3.5"), ("2.15", "cpu")),
    Case("maxwell-m40-535", nv("535.104.05", "5.2"), ("2.14", "cu126"), flags={MVC}),
    Case("maxwell-580", nv("580.95.05", "5.2"), ("2.14", "cu126")),
    Case("pascal-1080ti-525", nv("525.147.05", "6.1"), ("2.14", "cu126"), flags={MVC}),
    Case("pascal-450.80", nv("450.80.02", "6.1", python="3.10"), ("2.7", "cu118"), flags={MVC}),
    Case("pascal-450.51-below-every-floor", nv("450.51.06", "6.1"), ("2.15", "cpu")),
    Case("volta-v100-550", nv("550.54.15", "7.0"), ("2.14", "cu126"), flags={MVC}),
    Case("volta-v100-580", nv("580.95.05", "7.0"), ("2.14", "cu126")),
    Case("turing-t4-535", nv("535.104.05", "7.5"), ("2.14", "cu126"), flags={MVC}),
    Case("turing-t4-580", nv("580.95.05", "7.5"), ("2.15", "cu130")),
    Case("ampere-a100-560", nv("560.35.03", "8.0"), ("2.14", "cu126")),
    Case("ampere-3090-575", nv("575.57.08", "8.6"), ("2.14", "cu126")),
    Case("ampere-3090-590", nv("590.44.01", "8.6"), ("2.15", "cu130")),
    Case("ada-4090-570", nv("570.133.07", "8.9"), ("2.14", "cu126")),
    Case("ada-4090-595", nv("595.45.04", "8.9"), ("2.15", "cu132")),
    Case("hopper-h100-525", nv("525.105.17", "9.0"), ("2.14", "cu126"), flags={MVC}),
    Case("hopper-h100-580", nv("580.95.05", "9.0"), ("2.15", "cu130")),
    Case("blackwell-b200-570", nv("570.133.20", "10.0"), ("2.11", "cu128")),
    Case("blackwell-b200-580", nv("580.95.05", "10.0"), ("2.15", "cu130")),
    Case("blackwell-5090-560-compat", nv("560.35.03", "12.0"), ("2.11", "cu128"), flags={MVC}),
    Case("blackwell-5090-575", nv("575.57.08", "12.0"), ("2.11", "cu128")),
    Case("blackwell-5090-580", nv("580.95.05", "12.0"), ("2.15", "cu130")),
    Case("gb10-spark-aarch64-580", nv("580.95.05", "12.1", arch="aarch64"), ("2.15", "cu130")),
    Case(
        "gh200-aarch64-550", nv("550.54.15", "9.0", arch="aarch64"), ("2.14", "cu126"), flags={MVC}
    ),
    Case("future-sm130-ptx-only", nv("580.95.05", "13.0"), ("2.15", "cu130"), flags={PTX}),
    Case(
        "future-sm130-windows-older-ptx",
        nv("580.95.05", "13.0", os="windows"),
        ("2.8", "cu129"),
        flags={PTX},
    ),
    Case("mixed-1080ti-4090", nv("580.95.05", "6.1", "8.9"), ("2.14", "cu126")),
    Case("mixed-1080ti-5090-no-common-build", nv("580.95.05", "12.0", "6.1"), ("2.15", "cpu")),
    Case("windows-3080-566", nv("566.36", "8.6", os="windows"), ("2.14", "cu126")),
    Case("windows-5090-576", nv("576.02", "12.0", os="windows"), ("2.11", "cu128")),
    Case("driver-only-no-cc", nv("580.95.05"), ("2.15", "cu130"), flags={CCU}),
    Case("cuda-level-only", make_host(cuda="12.4", gpus=("8.6",)), ("2.14", "cu126"), flags={MVC}),
    Case("nvidia-no-driver", make_host(gpus=(None,), state=NvidiaState.NO_DRIVER), ("2.15", "cpu")),
    Case("nvidia-all-hidden", make_host(driver="580.95.05", hidden=2), ("2.15", "cpu")),
    Case(
        "nvidia-not-loaded",
        make_host(driver="580.95.05", state=NvidiaState.NOT_LOADED),
        ("2.15", "cpu"),
    ),
    Case("jetson-orin-tegra", nv("540.4.0", "8.7", arch="aarch64", tegra="Orin"), ("2.15", "cpu")),
    Case("nvidia-plus-intel-igpu", nv("580.95.05", "8.6", xpu=True), ("2.15", "cu130")),
    # Apple
    Case("mac-m1-14.5", make_host(os="macos", arch="arm64", macos="14.5"), ("2.15", "mps")),
    Case(
        "mac-m1-12.5-older-mps", make_host(os="macos", arch="arm64", macos="12.5"), ("2.4", "mps")
    ),
    Case("mac-m1-11.7-no-mps", make_host(os="macos", arch="arm64", macos="11.7"), ("2.15", "cpu")),
    Case("mac-intel", make_host(os="macos", arch="x86_64", macos="13.6"), ("2.2", "cpu")),
    Case("mac-rosetta", make_host(os="macos", arch="arm64", rosetta=True), ("2.2", "cpu")),
    Case("mac-intel-py313", make_host(os="macos", arch="x86_64", python="3.13"), NOT_OK),
    # AMD
    Case("amd-mi300x-gfx942", make_host(gfx=("gfx942",), rocm="6.2.4"), ("2.14", "rocm7.2")),
    Case("amd-mi355-gfx950", make_host(gfx=("gfx950",)), ("2.14", "rocm7.2")),
    Case("amd-strix-halo-gfx1151", make_host(gfx=("gfx1151",)), ("2.14", "rocm7.2")),
    Case("amd-rx6700-gfx1031", make_host(gfx=("gfx1031",)), ("2.15", "cpu")),
    Case("amd-mixed-gfx1030-gfx1101", make_host(gfx=("gfx1101", "gfx1030")), ("2.14", "rocm7.2")),
    Case("amd-no-kfd", make_host(gfx=("gfx1100",), kfd=False), ("2.15", "cpu")),
    Case("amd-py39", make_host(gfx=("gfx90a",), python="3.9"), ("2.8", "rocm6.4")),
    Case("amd-windows", make_host(os="windows", gfx=("gfx1100",)), ("2.15", "cpu")),
    # Intel
    Case("intel-arc-linux", make_host(xpu=True), ("2.15", "xpu")),
    Case("intel-arc-windows", make_host(xpu=True, os="windows"), ("2.15", "xpu")),
    Case("intel-arc-py39", make_host(xpu=True, python="3.9"), ("2.8", "xpu")),
    # CPU, Python and platforms
    Case("cpu-py39", make_host(python="3.9"), ("2.8", "cpu")),
    Case("cpu-py310", make_host(python="3.10"), ("2.15", "cpu")),
    Case("cpu-py314", make_host(python="3.14"), ("2.15", "cpu")),
    Case("cpu-py314t-free-threaded", make_host(python="3.14", free_threaded=True), ("2.13", "cpu")),
    Case("cpu-aarch64", make_host(arch="aarch64"), ("2.15", "cpu")),
    Case(
        "centos7-glibc217-ampere",
        nv("535.104.05", "8.6", glibc="2.17", python="3.10"),
        ("2.5", "cu121"),
    ),
    Case("alpine-musl", make_host(libc="musl"), NOT_OK),
    Case("linux-ppc64le", make_host(arch="ppc64le"), NOT_OK),
    Case("cpu-py315", make_host(python="3.15"), NOT_OK),
    # the user's constraints
    Case("torch<2.6-on-4090", nv("580.95.05", "8.9"), ("2.5", "cu124"), req("torch<2.6")),
    Case("torch>=2.12-on-5090-570", nv("570.133.07", "12.0"), NOT_OK, req("torch>=2.12")),
    Case(
        "torchvision<0.22-on-3090",
        nv("580.95.05", "8.6"),
        ("2.6", "cu126"),
        req("torch", "torchvision<0.22"),
    ),
    Case("torch==2.7.1-on-5090", nv("580.95.05", "12.0"), ("2.7", "cu128"), req("torch==2.7.1")),
    Case(
        "torchaudio==2.8.0-on-3090",
        nv("580.95.05", "8.6"),
        ("2.8", "cu129"),
        req("torchaudio==2.8.0", "numpy"),
    ),
    Case("torch==2.1.*-on-py312", make_host(), NOT_OK, req("torch==2.1.*")),
    # channels and explicit backends
    Case("nightly-h100", nv("580.95.05", "9.0"), ("2.16", "cu130"), req(channel="nightly")),
    Case("test-channel-4090", nv("595.45.04", "8.9"), ("2.16", "cu132"), req(channel="test")),
    Case(
        "forced-cu126-on-5090",
        nv("580.95.05", "12.0"),
        ("2.14", "cu126"),
        req(backend="cu126"),
        flags={FORCED},
    ),
    Case("forced-cpu-on-h100", nv("580.95.05", "9.0"), ("2.15", "cpu"), req(backend="cpu")),
    Case(
        "forced-rocm6.4-without-amd",
        nv("580.95.05", "9.0"),
        ("2.9", "rocm6.4"),
        req(backend="rocm6.4"),
    ),
    Case("forced-unknown-cu134", nv("580.95.05", "9.0"), NOT_OK, req(backend="cu134")),
    Case("forced-mps-on-linux", make_host(), NOT_OK, req(backend="mps")),
    # recorded hosts (tests/hosts/)
    Case("rec-h100-driver580", "h100-driver580", ("2.15", "cu130")),
    Case("rec-gtx1080ti-driver580", "gtx1080ti-driver580", ("2.14", "cu126")),
    Case("rec-rtx5090-driver570", "rtx5090-driver570", ("2.11", "cu128")),
    Case("rec-rtx5090-driver570-torch>=2.12", "rtx5090-driver570", NOT_OK, req("torch>=2.12")),
    Case("rec-a100-mig", "a100-mig", ("2.14", "cu126")),
    Case("rec-gh200-aarch64", "gh200-aarch64", ("2.15", "cu130")),
    Case("rec-jetson-orin", "jetson-orin", ("2.15", "cpu")),
    Case("rec-mac-m3", "mac-m3", ("2.15", "mps")),
    Case("rec-mac-intel", "mac-intel", ("2.2", "cpu")),
    Case("rec-amd-mi300x", "amd-mi300x", ("2.14", "rocm7.2")),
    Case("rec-amd-rx7900", "amd-rx7900", ("2.14", "rocm7.2")),
    Case("rec-intel-arc", "intel-arc", ("2.15", "xpu")),
    Case("rec-cpu-cloud-vm", "cpu-cloud-vm", ("2.15", "cpu")),
    Case("rec-container-no-nvml", "container-no-nvml", ("2.15", "cu130"), flags={CCU}),
    Case("rec-firstboot-not-loaded", "firstboot-not-loaded", ("2.15", "cpu")),
    Case("rec-wsl2-rtx4090", "wsl2-rtx4090", ("2.15", "cu130")),
]


def host_of(case: Case) -> HostReport:
    if isinstance(case.host, HostReport):
        return case.host
    from torchenv.agent.host.source import load_host

    return load_host(replay=HOSTS / case.host)


def run(case: Case, catalog: Catalog = CATALOG) -> Selection:
    return select(host_of(case), case.request, catalog)


def test_the_table_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_every_recorded_host_is_in_the_table() -> None:
    recorded = {p.name for p in HOSTS.iterdir() if (p / "root").is_dir()} - {"this-dev-box"}
    named = {c.host for c in CASES if isinstance(c.host, str)}
    assert recorded <= named, f"recorded hosts missing from the table: {recorded - named}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_selection_table(case: Case) -> None:
    result = run(case)
    if case.expect is None:
        assert not result.ok, f"expected nothing to satisfy, got {result.torch} {result.backend}"
        assert result.backend is None and result.reasons
        return
    assert result.ok, f"{result.reasons} / unlock {result.unlock}"
    assert (result.torch, result.backend) == case.expect, result.reasons
    assert set(case.flags) <= set(result.flags)
    chosen = result.candidates[0]
    assert (chosen.torch, chosen.backend, chosen.ok) == (*case.expect, True)
    assert chosen.reasons


def test_constraints_that_exclude_every_working_build_say_what_unlocks_them() -> None:
    result = select(nv("570.133.07", "12.0"), req("torch>=2.12"), CATALOG)
    assert not result.ok
    assert any("driver >= 580" in u and "cu130" in u for u in result.unlock)
    assert any("2.11" in u and "cu128" in u for u in result.unlock)


def test_python_too_new_names_the_python_that_works() -> None:
    result = select(make_host(python="3.15"), Request(), CATALOG)
    assert result.unlock == ("Python 3.10-3.14",)


def test_forced_backend_warns_about_the_gpu_it_does_not_cover() -> None:
    result = select(nv("580.95.05", "12.0"), req(backend="cu126"), CATALOG)
    assert any("cu126 has no code for GPU 0" in w for w in result.warnings)


def test_forced_backend_unknown_to_the_catalog_suggests_a_refresh() -> None:
    result = select(nv("580.95.05", "9.0"), req(backend="cu134"), CATALOG)
    assert any("catalog refresh" in u for u in result.unlock)


def test_mixed_gpus_explain_which_gpu_forces_what() -> None:
    result = select(nv("580.95.05", "6.1", "12.0"), Request(), CATALOG)
    story = " ".join(result.warnings)
    assert "sm 6.1) needs cu117, cu118, cu121, cu124, cu126" in story
    assert "sm 12.0) needs cu128, cu129, cu130, cu132" in story


def test_a_gpu_with_sass_somewhere_is_never_served_by_ptx_alone() -> None:
    # cu124 (torch 2.4-2.6) carries PTX 9.0, which could JIT for a 5090, but cu128+ has its SASS.
    result = select(nv("580.95.05", "12.0"), req("torch<2.7"), CATALOG)
    assert not result.ok


def test_jetson_and_not_loaded_say_why_cuda_is_not_used() -> None:
    jetson = select(nv("540.4.0", "8.7", arch="aarch64", tegra="Orin"), Request(), CATALOG)
    assert any("Jetson" in w for w in jetson.warnings)
    firstboot = select(
        make_host(driver="580.95.05", state=NvidiaState.NOT_LOADED), Request(), CATALOG
    )
    assert any("not loaded" in w for w in firstboot.warnings)


@pytest.mark.parametrize(
    ("channel", "backend", "url"),
    [
        ("stable", "cu130", "https://mirror.example/whl/cu130"),
        ("test", "cu130", "https://mirror.example/whl/test/cu130"),
        ("nightly", "cu130", "https://mirror.example/whl/nightly/cu130"),
    ],
)
def test_index_url_follows_the_channel_and_the_mirror(channel: str, backend: str, url: str) -> None:
    request = Request(
        channel=channel, backend=backend, torch_index_url="https://mirror.example/whl/"
    )
    assert select(nv("580.95.05", "8.6"), request, CATALOG).index_url == url


def test_apple_wheels_come_from_the_default_index() -> None:
    request = Request(default_index_url="https://pypi.mirror.example/simple")
    mac = select(make_host(os="macos", arch="arm64"), request, CATALOG)
    assert mac.index_url == "https://pypi.mirror.example/simple"


def test_json_has_the_promised_fields() -> None:
    data = select(nv("580.95.05", "6.1"), Request(), CATALOG).to_json()
    assert {"backend", "torch", "index_url", "channel", "candidates"} <= set(data)
    assert data["backend"] == "cu126"
    rejected = [c for c in data["candidates"] if c["backend"] == "cu130" and c["torch"] == "2.15"]
    assert rejected and not rejected[0]["ok"]
    assert any("no code for GPU 0" in r for r in rejected[0]["reasons"])


def test_invalid_requirement_is_refused() -> None:
    from torchenv.backends.select import InvalidRequest

    with pytest.raises(InvalidRequest):
        select(make_host(), Request(requirements=("torch>>2",)), CATALOG)
