"""Resolver backends: exact-target resolution with uv and pip against the loopback index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from helpers.hosts import linux_host, mac_host, need_uv
from indexsim import IndexSim

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.lock.resolvers import PipResolver, ResolveRequest, UvResolver, target_of
from torchenv.agent.lock.resolvers.pip import parse_report
from torchenv.agent.lock.resolvers.standin import direct_reference, write_standin
from torchenv.agent.lock.resolvers.target import Target
from torchenv.agent.lock.resolvers.uv import parse_pylock_output
from torchenv.probes.report import HostReport

TORCH_X86 = "torch-2.9.0+cu126-cp{py}-cp{py}-manylinux_2_28_x86_64.whl"
TORCH_ARM = "torch-2.9.0+cu126-cp{py}-cp{py}-manylinux_2_28_aarch64.whl"
TORCH_CPU = "torch-2.9.0+cpu-cp{py}-cp{py}-manylinux_2_28_x86_64.whl"
TORCH_MAC = "torch-2.9.0-cp{py}-cp{py}-macosx_11_0_arm64.whl"


def _request(
    sim: IndexSim, tmp_path: Path, host: HostReport, torch_file: str, *extra: str
) -> ResolveRequest:
    target = target_of(host)
    py = target.python_minor.replace(".", "")
    filename = torch_file.format(py=py)
    metadata = sim.site.files[filename].metadata
    assert metadata is not None
    standin = write_standin(tmp_path / "standins", filename, metadata)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ResolveRequest(
        requirements=(direct_reference("torch", frozenset(), standin), *extra),
        target=target,
        index_url=sim.pypi_url,
        workdir=work,
        cache_dir=tmp_path / "cache",
    )


def _resolvers() -> list[object]:
    return [pytest.param("uv", id="uv"), pytest.param("pip", id="pip")]


def _make(name: str) -> UvResolver | PipResolver:
    if name == "uv":
        return UvResolver(binary=need_uv())
    return PipResolver()


@pytest.mark.parametrize("name", _resolvers())
def test_markers_are_the_targets_not_the_running_interpreters(
    name: str,
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    # torch (cpu: no triton) needs setuptools only on Python >= 3.12; this runs on 3.11.
    # A pip that evaluates markers against its own interpreter leaves it out of a 3.12 lock.
    for python, expected in (("3.12", True), ("3.11", False)):
        req = _request(indexsim, tmp_path / python, linux_host(python=python), TORCH_CPU)
        versions = _make(name).resolve(req).versions()
        assert ("setuptools" in versions) is expected, (python, versions)


@pytest.mark.parametrize("name", _resolvers())
def test_the_wheels_own_metadata_decides_the_nvidia_runtime(
    name: str,
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    x86 = _make(name).resolve(_request(indexsim, tmp_path / "x86", linux_host(), TORCH_X86))
    arm = _make(name).resolve(
        _request(indexsim, tmp_path / "arm", linux_host(arch="aarch64"), TORCH_ARM)
    )
    assert {"nvidia-cublas-cu12", "nvidia-cudnn-cu12", "triton"} <= set(x86.versions())
    assert not any(n.startswith("nvidia-") for n in arm.versions())
    assert "triton" not in arm.versions()  # its marker is x86_64-only


def test_uv_and_pip_pin_the_same_set(indexsim: IndexSim, tmp_path: Path) -> None:
    need_uv()
    cases = [(linux_host(python="3.12"), TORCH_X86), (mac_host(), TORCH_MAC)]
    for i, (host, torch_file) in enumerate(cases):
        uv = UvResolver().resolve(
            _request(indexsim, tmp_path / f"uv{i}", host, torch_file, "certifi", "numpy")
        )
        pip = PipResolver().resolve(
            _request(indexsim, tmp_path / f"pip{i}", host, torch_file, "certifi", "numpy")
        )
        assert uv.versions() == pip.versions()
        assert uv.versions()["certifi"] == "2025.8.3"
        assert uv.versions()["numpy"] == "2.2.6"  # 2.2.5 is yanked... and older anyway
        torch = {p.name: p for p in uv.pins}["torch"]
        assert torch.direct_url is not None and torch.version.startswith("2.9.0")


@pytest.mark.parametrize("name", _resolvers())
def test_a_conflict_is_a_resolution_error_with_the_resolvers_words(
    name: str,
    indexsim: IndexSim,
    tmp_path: Path,
) -> None:
    req = _request(indexsim, tmp_path, linux_host(), TORCH_X86, "filelock<1")
    with pytest.raises(ResolutionError, match="filelock") as info:
        _make(name).resolve(req)
    assert info.value.details["returncode"] != 0


def test_parse_pylock_output_takes_the_targets_best_wheel_and_the_direct_references() -> None:
    sha = "a" * 64

    def wheel(tag: str, size: int, digest: str) -> dict[str, object]:
        url = f"http://x/numpy-2.2.6-{tag}.whl"
        return {"url": url, "size": size, "hashes": {"sha256": digest}}

    text = tomli_w.dumps({
        "lock-version": "1.0",
        "created-by": "uv",
        "packages": [
            {"name": "NumPy", "version": "2.2.6", "wheels": [
                wheel("cp311-cp311-manylinux_2_17_aarch64", 1, "b" * 64),
                wheel("cp311-abi3-manylinux_2_17_x86_64", 2, "c" * 64),
                wheel("cp311-cp311-manylinux_2_17_x86_64", 3, sha),
            ]},
            {"name": "torch", "version": "2.9.0+cu126", "archive": {
                "path": "/tmp/s/torch-2.9.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl"}},
        ],
    })  # fmt: skip
    target = Target(
        "linux", "x86_64", "3.11.0", "cpython", "cp311", ("cp311", "abi3", "none"),
        ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64"),
    )  # fmt: skip
    pins = {p.name: p for p in parse_pylock_output(text, target)}
    numpy = pins["numpy"]
    assert numpy.wheel is not None
    assert (numpy.wheel.size, numpy.wheel.sha256) == (3, sha)  # cp311 ABI beats abi3
    assert numpy.wheel.filename == "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl"
    assert pins["torch"].direct_url is not None and pins["torch"].wheel is None
    assert pins["torch"].version == "2.9.0+cu126"


def test_parse_report_reads_pins_and_target_dependencies() -> None:
    report = {
        "install": [
            {
                "is_direct": True,
                "download_info": {"url": "file:///s/torch.whl"},
                "metadata": {
                    "name": "torch",
                    "version": "2.9.0+cu126",
                    "requires_dist": [
                        "filelock",
                        'setuptools; python_version >= "3.12"',
                        'colorama; sys_platform == "win32"',
                    ],
                },
            },
            {
                "is_direct": False,
                "download_info": {"url": "http://x/filelock.whl"},
                "metadata": {"name": "FileLock", "version": "3.18.0"},
            },
            {
                "is_direct": False,
                "download_info": {"url": "http://x/setuptools.whl"},
                "metadata": {"name": "setuptools", "version": "80.9.0"},
            },
        ]
    }
    target = Target("linux", "x86_64", "3.11.0", "cpython", "cp311", ("cp311",), ("linux_x86_64",))
    pins = {p.name: p for p in parse_report(json.loads(json.dumps(report)), target.markers())}
    assert pins["torch"].direct_url == "file:///s/torch.whl"
    assert pins["torch"].dependencies == ("filelock",)  # setuptools' marker is false on 3.11
    assert pins["filelock"].direct_url is None


@pytest.mark.parametrize(
    ("host_args", "expected"),
    [
        ({"arch": "x86_64"}, "x86_64-manylinux_2_35"),
        ({"arch": "aarch64"}, "aarch64-manylinux_2_35"),
    ],
)
def test_uv_platform_follows_the_targets_glibc(host_args: dict[str, str], expected: str) -> None:
    assert target_of(linux_host(**host_args)).uv_platform() == expected


def test_target_markers_for_a_mac_from_linux() -> None:
    markers = target_of(mac_host(python="3.12")).markers()
    assert markers["sys_platform"] == "darwin"
    assert markers["platform_machine"] == "arm64"
    assert markers["python_version"] == "3.12"
    assert target_of(mac_host()).uv_platform() == "aarch64-apple-darwin"


def test_torchenv_uv_steers_the_lock_as_it_steers_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TORCHENV_UV names the uv the resolver runs; empty, it switches uv off (pip resolves)."""
    from torchenv.agent.lock.resolvers import choose_resolver

    calls: list[list[str]] = []

    def runner(argv: list[str], env: object, cwd: object, timeout: object) -> object:
        calls.append(list(argv))
        raise RuntimeError("stop after the command line")

    fake = tmp_path / "my-uv"
    monkeypatch.setenv("TORCHENV_UV", str(fake))
    request = ResolveRequest(
        requirements=("numpy",),
        target=target_of(linux_host(python="3.12")),
        index_url="http://127.0.0.1:9/simple",
        workdir=tmp_path,
    )
    with pytest.raises(RuntimeError, match="stop after"):
        UvResolver(runner=runner).resolve(request)  # type: ignore[arg-type]
    assert calls[0][0] == str(fake)

    monkeypatch.setenv("TORCHENV_UV", "")
    assert "TORCHENV_UV" in (UvResolver().unavailable() or "")
    with pytest.raises(ResolutionError, match="uv: TORCHENV_UV"):
        choose_resolver("uv")


def test_uvs_interpreter_check_ahead_fills_the_cache_and_decides_nothing(
    indexsim: IndexSim, tmp_path: Path
) -> None:
    """prepare() starts `uv python find` into the resolver's cache; the compile waits for it.
    A uv whose `python find` fails still resolves: the compile asks the interpreter itself."""
    uv = need_uv()
    req = _request(indexsim, tmp_path / "ok", linux_host(), TORCH_X86)
    resolver = UvResolver(binary=uv)
    resolver.prepare(req.cache_dir)
    resolver._warmed()  # what resolve waits for first
    assert req.cache_dir is not None
    assert list(req.cache_dir.glob("interpreter-v*/**/*.msgpack"))  # before any compile
    expected = resolver.resolve(req).versions()
    failing = tmp_path / "uv"
    failing.write_text(f'#!/bin/sh\n[ "$1" = python ] && exit 3\nexec {uv} "$@"\n')
    failing.chmod(0o755)
    req = _request(indexsim, tmp_path / "failing", linux_host(), TORCH_X86)
    resolver = UvResolver(binary=str(failing))
    resolver.prepare(req.cache_dir)
    assert resolver.resolve(req).versions() == expected
