"""Selection properties over generated NVIDIA hosts, and torchenv against uv's driver-only rule."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.hosts import make_host
from hypothesis import event, given, settings
from hypothesis import strategies as st

from torchenv.backends.catalog import Build, Catalog, Kind, cuda_of, dotted, load_catalog
from torchenv.backends.select import Flag, Request, Selection, select
from torchenv.backends.vocabulary import backend_kind

CATALOG = load_catalog()
DRIVERS = [
    "450.51.06",
    "450.80.02",
    "470.82.01",
    "520.61.05",
    "525.60.13",
    "535.104.05",
    "550.54.15",
    "560.35.03",
    "570.133.07",
    "575.57.08",
    "580.95.05",
    "590.44.01",
    "595.45.04",
    "610.10",
]
CCS = [
    "3.5",
    "3.7",
    "5.0",
    "5.2",
    "6.0",
    "6.1",
    "7.0",
    "7.2",
    "7.5",
    "8.0",
    "8.6",
    "8.7",
    "8.9",
    "9.0",
    "10.0",
    "10.3",
    "11.0",
    "12.0",
    "12.1",
    "13.0",
]

PYTHONS = ["3.9", "3.10", "3.12", "3.14"]
hosts = st.fixed_dictionaries(
    {
        "driver": st.sampled_from(DRIVERS),
        "gpus": st.lists(st.sampled_from(CCS), min_size=1, max_size=4).map(tuple),
        "os": st.sampled_from(["linux", "windows"]),
        "python": st.sampled_from(PYTHONS),
    }
)

# Hosts some CUDA build serves with SASS for every GPU, on a driver that runs it: GPUs of one
# generation (cu126 carries 5.0-9.0, cu128 and newer 7.5-12.0) and a driver at or above the
# Linux floor of a build that carries them.
OLDER_GPUS = ["5.0", "5.2", "6.0", "6.1", "7.0", "7.2", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0"]
NEWER_GPUS = ["7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.3", "12.0", "12.1"]


def capable(gpus: list[str], lowest_driver: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "driver": st.sampled_from(DRIVERS[DRIVERS.index(lowest_driver) :]),
            "gpus": st.lists(st.sampled_from(gpus), min_size=1, max_size=4).map(tuple),
            "os": st.sampled_from(["linux", "windows"]),
            "python": st.sampled_from(PYTHONS),
        }
    )


cuda_hosts = st.one_of(capable(OLDER_GPUS, "560.35.03"), capable(NEWER_GPUS, "570.133.07"))


def is_cuda(backend: str | None) -> bool:
    return backend is not None and backend_kind(backend) is Kind.CUDA


def chosen_build(catalog: Catalog, torch: str, platform: str, backend: str) -> Build:
    release = catalog.release(torch)
    assert release is not None
    build = release.build(platform, backend)
    assert build is not None
    return build


def sass_for(build: Build, cc: str) -> bool:
    major, minor = dotted(cc)
    return any(dotted(s)[0] == major and dotted(s)[1] <= minor for s in build.sass)


def assert_driver_runs_it(facts: dict[str, Any], result: Selection) -> None:
    """The chosen CUDA build's driver floor: native, or minor-version compatibility for SASS."""
    assert result.backend is not None
    driver, os_name = dotted(facts["driver"]), facts["os"]
    need = cuda_of(result.backend)
    compat = CATALOG.compat_floor(need[0])
    native = CATALOG.driver_floor(need)
    assert compat is not None and native is not None
    assert driver >= compat.for_os(os_name)
    if Flag.MINOR_VERSION_COMPAT not in result.flags or Flag.PTX_ONLY in result.flags:
        assert driver >= native.for_os(os_name)[0]


def assert_code_for_every_gpu(facts: dict[str, Any], result: Selection) -> None:
    """SASS for every GPU, or PTX it can JIT (flagged)."""
    assert result.torch is not None and result.platform is not None and result.backend
    build = chosen_build(CATALOG, result.torch, result.platform, result.backend)
    for cc in facts["gpus"]:
        if not sass_for(build, cc):
            assert Flag.PTX_ONLY in result.flags
            assert any(dotted(p) <= dotted(cc) for p in build.ptx)


def assert_no_cuda_build_could_run(result: Selection) -> None:
    """A host that gets no CUDA build has none that runs: every CUDA candidate failed a check
    (a usable one ranks above any CPU build)."""
    usable = [c.backend for c in result.candidates if c.ok and is_cuda(c.backend)]
    assert not usable, f"chose {result.backend} while {usable} run here"


@settings(max_examples=300, deadline=None)
@given(hosts)
def test_never_a_backend_whose_driver_floor_is_above_the_driver(facts: dict[str, Any]) -> None:
    result = select(make_host(**facts), Request(), CATALOG)
    event("CUDA" if is_cuda(result.backend) else "not CUDA")
    if is_cuda(result.backend):
        assert_driver_runs_it(facts, result)
    else:
        assert_no_cuda_build_could_run(result)


@settings(max_examples=300, deadline=None)
@given(hosts)
def test_never_a_cuda_build_without_code_for_a_visible_gpu(facts: dict[str, Any]) -> None:
    result = select(make_host(**facts), Request(), CATALOG)
    event("CUDA" if is_cuda(result.backend) else "not CUDA")
    if is_cuda(result.backend):
        assert_code_for_every_gpu(facts, result)
    else:
        assert_no_cuda_build_could_run(result)


@settings(max_examples=300, deadline=None)
@given(cuda_hosts)
def test_a_host_a_cuda_build_serves_gets_one_with_sass_for_every_gpu(
    facts: dict[str, Any],
) -> None:
    result = select(make_host(**facts), Request(), CATALOG)
    assert result.ok and is_cuda(result.backend), (result.backend, result.reasons)
    assert Flag.PTX_ONLY not in result.flags
    assert_driver_runs_it(facts, result)
    assert_code_for_every_gpu(facts, result)


@settings(max_examples=200, deadline=None)
@given(hosts, st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_gpu_order(facts: dict[str, Any], rnd: object) -> None:
    first = select(make_host(**facts), Request(), CATALOG)
    shuffled = list(facts["gpus"])
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    second = select(make_host(**{**facts, "gpus": tuple(reversed(shuffled))}), Request(), CATALOG)
    assert (first.ok, first.torch, first.backend, first.flags) == (
        second.ok,
        second.torch,
        second.backend,
        second.flags,
    )


# --- uv's rule: the newest CUDA backend whose driver floor the driver meets ------------------

UV_BACKENDS = ("cu130", "cu129", "cu128", "cu126", "cu124", "cu121", "cu118")  # newest first


def uv_pick(driver: str, os_name: str = "linux") -> str:
    """uv `--torch-backend=auto` (FACTS.md section 6): the driver alone, no compute capability."""
    for backend in UV_BACKENDS:
        floor = CATALOG.driver_floor(cuda_of(backend))
        if floor is not None and dotted(driver) >= floor.for_os(os_name)[0]:
            return backend
    return "cpu"


def newest_with(backend: str, platform: str = "linux-x86_64") -> Build:
    for release in CATALOG.releases:
        build = release.build(platform, backend)
        if build is not None:
            return build
    raise AssertionError(backend)


UV_HOSTS = [
    ("gtx1080ti-580", "580.95.05", ("6.1",)),
    ("titan-v-580", "580.95.05", ("7.0",)),
    ("gtx980-575", "575.57.08", ("5.2",)),
    ("p100-570", "570.133.07", ("6.0",)),
    ("1080ti-plus-3090-580", "580.95.05", ("6.1", "8.6")),
    ("p40-590", "590.44.01", ("6.1",)),
    ("gtx1080-wsl-581", "581.57", ("6.1",)),
]


@pytest.mark.parametrize(("name", "driver", "gpus"), UV_HOSTS, ids=[h[0] for h in UV_HOSTS])
def test_where_uv_picks_a_build_without_the_gpus_code_torchenv_picks_one_with_it(
    name: str, driver: str, gpus: tuple[str, ...]
) -> None:
    uv = uv_pick(driver)
    uv_build = newest_with(uv)
    assert not all(sass_for(uv_build, cc) for cc in gpus), f"uv's {uv} would run on {name}"
    result = select(make_host(driver=driver, gpus=gpus), Request(), CATALOG)
    assert result.ok and result.torch and result.backend != uv
    ours = chosen_build(CATALOG, result.torch, "linux-x86_64", result.backend or "")
    assert ours.kind is Kind.CUDA
    assert all(sass_for(ours, cc) for cc in gpus)


def test_the_issue_example_1080ti_on_580() -> None:
    assert uv_pick("580.95.05") == "cu130"
    result = select(make_host(driver="580.95.05", gpus=("6.1",)), Request(), CATALOG)
    assert result.backend == "cu126"
