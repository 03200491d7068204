"""The exact-target lock against the loopback index: the five PyTorch-index problems, faults."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers.hosts import linux_host, mac_host, need_uv
from helpers.lockkit import Chosen, index_for
from indexsim import Fault, IndexSim
from indexsim.catalog import BINARY_PYPI, PURE_PYPI, PYTORCH_TRITON

from torchenv.agent.base.errors import IndexError_, IntegrityError
from torchenv.agent.env.fetch import cache_path
from torchenv.agent.index.client import IndexClient
from torchenv.agent.lock.build import lock_for
from torchenv.agent.lock.check import check_lock
from torchenv.agent.lock.locker import FAMILY
from torchenv.agent.lock.pylock import PyLock
from torchenv.agent.lock.resolvers import PipResolver, UvResolver
from torchenv.probes.report import HostReport


def run_lock(
    sim: IndexSim,
    tmp_path: Path,
    host: HostReport,
    chosen: Chosen,
    requirements: Sequence[str] = ("torch", "torchvision", "torchaudio"),
    *,
    resolver: str = "uv",
) -> PyLock:
    backend = UvResolver(binary=need_uv()) if resolver == "uv" else PipResolver()
    with IndexClient(backoff=0.01) as client:
        return lock_for(
            requirements, host, chosen, index_for(sim, tmp_path), resolver=backend,
            client=client,
        )  # fmt: skip


def versions(lock: PyLock) -> dict[str, str]:
    return {p.name: p.version for p in lock.packages}


# -- problem 1: nightlies ----------------------------------------------------------------------


def test_nightly_takes_prereleases_labels_triton_and_the_builds_made_for_that_torch(
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    # An older nightly pinned on purpose: the newest torchvision nightly pins the newest torch,
    # so a resolver that takes "the newest torchvision" cannot satisfy it.
    lock = run_lock(
        indexsim, tmp_path, linux_host(), Chosen("cu126", "nightly", None),
        ("torch==2.9.0.dev20250801+cu126", "torchvision", "torchaudio"),
    )  # fmt: skip
    got = versions(lock)
    assert got["torch"] == "2.9.0.dev20250801+cu126"
    assert got["torchvision"] == "0.24.0.dev20250801+cu126"
    assert got["torchaudio"] == "2.9.0.dev20250801+cu126"
    assert got["pytorch-triton"] == PYTORCH_TRITON
    triton = lock.package("pytorch-triton")
    assert triton is not None and triton.index == indexsim.torch_index_url + "/nightly/cu126"
    # Nightly pages publish no hashes: the lock hashed the files it will install.
    for name in ("torch", "torchvision", "torchaudio", "pytorch-triton"):
        package = lock.package(name)
        assert package is not None
        served = indexsim.site.files[package.wheel.name]
        assert (package.wheel.sha256, package.wheel.size) == (served.sha256, served.size)
        # ... and left them in the cache where sync looks, so sync does not download them again
        assert cache_path(tmp_path / "cache", package).stat().st_size == served.size


def test_nightly_without_a_pin_takes_the_newest_nightly(
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    got = versions(run_lock(indexsim, tmp_path, linux_host(), Chosen("cu126", "nightly", None)))
    assert got["torch"] == "2.9.0.dev20250802+cu126"
    assert got["torchvision"] == "0.24.0.dev20250802+cu126"


# -- problem 2: metadata without whole wheels --------------------------------------------------


def test_locking_reads_under_one_percent_of_the_wheels_bytes(
    padded_sim: IndexSim, tmp_path: Path
) -> None:
    lock = run_lock(padded_sim, tmp_path, linux_host(), Chosen("cpu"))
    family = [lock.package(n) for n in ("torch", "torchvision", "torchaudio")]
    served = {f.filename: f.size for f in padded_sim.site.files.values()}
    total = sum(served[p.wheel.name] for p in family if p is not None and p.wheel.name)
    assert total > 100_000_000  # realistically padded
    wheel_bytes = padded_sim.bytes_sent("/whl/*.whl")
    assert 0 < wheel_bytes < total / 100
    # the cpu wheels have no PEP 658 file: every read of them was a range request
    whole = [r for r in padded_sim.requests("/whl/*.whl") if r.method == "GET" and not r.range]
    assert whole == []


@pytest.fixture
def padded_sim(tmp_path_factory: pytest.TempPathFactory) -> IndexSim:
    from dataclasses import replace

    from indexsim import build_site, default_catalog
    from indexsim.catalog import Catalog

    sizes = {"torch": 200_000_000, "torchvision": 8_000_000, "torchaudio": 4_000_000}
    catalog = default_catalog(pythons=("cp311",))
    padded = Catalog(
        tuple(
            replace(h, wheel=replace(h.wheel, padding=sizes[h.project]))
            if h.wheel is not None
            and h.project in sizes
            and h.variant == "cpu"
            and "+cpu" in h.wheel.version
            and h.wheel.tag.endswith("x86_64")
            else h
            for h in catalog.files
        )
    )
    site = build_site(padded, tmp_path_factory.mktemp("padded"))
    sim = IndexSim(site).start()
    yield sim  # type: ignore[misc]
    sim.stop()


# -- problem 3: metadata differs between wheels of one version ---------------------------------


def test_each_target_gets_the_requirements_of_its_own_wheel(
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    x86 = run_lock(indexsim, tmp_path / "x86", linux_host(), Chosen("cu126"), ("torch",))
    arm = run_lock(
        indexsim, tmp_path / "arm", linux_host(arch="aarch64"), Chosen("cu126"), ("torch",)
    )
    x86_torch, arm_torch = x86.package("torch"), arm.package("torch")
    assert x86_torch is not None and x86_torch.wheel.name.endswith("x86_64.whl")
    assert arm_torch is not None and arm_torch.wheel.name.endswith("aarch64.whl")
    x86_nvidia = {n for n in x86.names if n.startswith("nvidia-")}
    assert x86_nvidia == {"nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-cudnn-cu12"}
    assert not any(n.startswith("nvidia-") for n in arm.names)


# -- problem 4: the PyTorch index's copies of PyPI packages ------------------------------------


def test_only_the_torch_family_comes_from_the_pytorch_index(
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    lock = run_lock(
        indexsim, tmp_path, linux_host(), Chosen("cu126"),
        ("torch", "torchvision", "torchaudio", "certifi"),
    )  # fmt: skip
    newest = {n: v[0] for n, v in {**PURE_PYPI, **BINARY_PYPI}.items()}
    for package in lock.packages:
        if package.name in FAMILY:
            assert package.index == indexsim.torch_index_url + "/cu126"
            assert package.wheel.url.startswith(indexsim.torch_index_url + "/cu126/")
        else:
            assert package.index == indexsim.pypi_url, package
            assert "/packages/" in package.wheel.url, package
            if package.name in newest:
                assert package.version == newest[package.name], package
    assert versions(lock)["certifi"] == "2025.8.3"  # not the index's 2022.12.7


# -- problem 5: macOS wheels have no label -----------------------------------------------------


def test_one_command_per_target_gets_the_right_cpu_build(
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    mac = run_lock(indexsim, tmp_path / "mac", mac_host(), Chosen("mps"))
    linux = run_lock(indexsim, tmp_path / "linux", linux_host(), Chosen("cpu"))
    mac_torch, linux_torch = mac.package("torch"), linux.package("torch")
    assert mac_torch is not None and linux_torch is not None
    assert mac_torch.version == "2.9.0"
    assert mac_torch.wheel.name.endswith("macosx_11_0_arm64.whl")
    assert linux_torch.version == "2.9.0+cpu"
    assert "manylinux" in linux_torch.wheel.name
    assert versions(mac)["torchvision"] == "0.24.0"
    assert versions(linux)["torchvision"] == "0.24.0+cpu"


# -- resolvers agree ---------------------------------------------------------------------------


def test_uv_and_pip_lock_the_same_wheels(indexsim: IndexSim, tmp_path: Path) -> None:
    def wheels(lock: PyLock) -> dict[str, tuple[str, str, str]]:
        return {p.name: (p.version, p.wheel.url, p.wheel.sha256) for p in lock.packages}

    reqs = ("torch", "torchvision", "numpy", "certifi")
    for i, host in enumerate((linux_host(python="3.12"), mac_host())):
        chosen = Chosen("mps") if host.system.os == "macos" else Chosen("cu126")
        uv = run_lock(indexsim, tmp_path / f"uv{i}", host, chosen, reqs, resolver="uv")
        pip = run_lock(indexsim, tmp_path / f"pip{i}", host, chosen, reqs, resolver="pip")
        assert wheels(uv) == wheels(pip)


# -- faults ------------------------------------------------------------------------------------


def test_a_500_and_a_reset_are_retried(indexsim: IndexSim, tmp_path: Path) -> None:
    indexsim.inject(Fault("status", "/whl/cu126/torch/", times=1, status=500))
    indexsim.inject(Fault("reset", "/simple/filelock/", times=1))
    lock = run_lock(indexsim, tmp_path, linux_host(), Chosen("cu126"), ("torch",))
    assert versions(lock)["torch"] == "2.9.0+cu126"
    assert indexsim.count("/whl/cu126/torch/", status=500) == 1
    assert indexsim.count("/simple/filelock/") >= 2


def test_a_wrong_metadata_hash_is_refused(indexsim: IndexSim, tmp_path: Path) -> None:
    indexsim.knobs.wrong_hash.add(
        "torch-2.9.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl.metadata"
    )
    with pytest.raises(IntegrityError, match="metadata"):
        run_lock(indexsim, tmp_path, linux_host(), Chosen("cu126"), ("torch",))


def test_a_truncated_download_is_refused(indexsim: IndexSim, tmp_path: Path) -> None:
    # nightly pages carry no hash, so the lock downloads torch to hash it; every try is cut short
    indexsim.inject(Fault("truncate", "/whl/nightly/cu126/torch-*.whl", times=-1))
    with pytest.raises(IndexError_):
        run_lock(indexsim, tmp_path, linux_host(), Chosen("cu126", "nightly", None), ("torch",))


# -- --check -----------------------------------------------------------------------------------


def test_check_says_whether_the_lock_fits_the_host(indexsim: IndexSim, tmp_path: Path) -> None:
    host = linux_host()
    lock = run_lock(indexsim, tmp_path, host, Chosen("cu126"), ("torch",))
    assert check_lock(lock, host) == []
    other = linux_host(arch="aarch64")
    diffs = {d.fact: d for d in check_lock(lock, other)}
    assert "arch" in diffs
    assert (diffs["arch"].locked, diffs["arch"].host) == ("x86_64", "aarch64")


def test_a_page_without_sizes_costs_no_head_request(indexsim: IndexSim, tmp_path: Path) -> None:
    """PEP 751 makes sizes optional: the torch index's HTML pages list none, and the lock asks
    for none; PyPI's JSON pages list them, and the lock keeps them."""
    lock = run_lock(indexsim, tmp_path, linux_host(), Chosen("cpu"), ("torch",))
    assert [r.path for r in indexsim.requests() if r.method == "HEAD"] == []
    torch = lock.package("torch")
    assert torch is not None and torch.wheel.size is None
    sized = [p for p in lock.packages if p.name != "torch"]
    assert sized and all(p.wheel.size for p in sized)
