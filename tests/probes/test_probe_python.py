"""The Python probe: the running interpreter's tags, and tags for a described target."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import copy_host, empty_host, set_fact
from packaging import tags as ptags

from torchenv.probes import LiveIO, ReplayIO, python


@pytest.mark.parametrize(
    ("version", "free_threaded", "expected"),
    [
        ("3.12.4", False, ("cp312", "abi3", "none")),
        ("3.13", True, ("cp313t", "none")),
        ("3.10.0rc1", False, ("cp310", "abi3", "none")),
    ],
)
def test_abi_tags(version: str, free_threaded: bool, expected: tuple[str, ...]) -> None:
    assert python.abi_tags(version, free_threaded=free_threaded) == expected


@pytest.mark.parametrize(
    ("version", "implementation", "tag"),
    [("3.12.4", "cpython", "cp312"), ("3.10", "pypy", "pp310"), ("3.9.1", "cpython", "cp39")],
)
def test_interpreter_tag(version: str, implementation: str, tag: str) -> None:
    assert python.interpreter_tag(version, implementation) == tag


def test_not_a_version() -> None:
    with pytest.raises(ValueError, match="not a Python version"):
        python.interpreter_tag("twelve")


def test_describe_linux_x86_64_glibc_228() -> None:
    report = python.describe(
        "3.12", os_name="linux", arch="x86_64", libc_version="2.28", macos_version=None
    )
    assert (report.interpreter_tag, report.abi_tags) == ("cp312", ("cp312", "abi3", "none"))
    tags = report.platform_tags
    assert tags[:3] == ("linux_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64")
    assert tags.index("manylinux2014_x86_64") == tags.index("manylinux_2_17_x86_64") + 1
    assert tags[-2:] == ("manylinux_2_5_x86_64", "manylinux1_x86_64")
    assert "manylinux_2_29_x86_64" not in tags


def test_describe_linux_aarch64_stops_at_2_17() -> None:
    tags = python.describe(
        "3.11", os_name="linux", arch="aarch64", libc_version="2.39", macos_version=None
    ).platform_tags
    assert tags[0] == "linux_aarch64" and tags[1] == "manylinux_2_39_aarch64"
    assert tags[-2:] == ("manylinux_2_17_aarch64", "manylinux2014_aarch64")


def test_describe_linux_without_glibc_has_only_the_linux_tag() -> None:
    tags = python.describe(
        "3.12", os_name="linux", arch="x86_64", libc_version=None, macos_version=None
    ).platform_tags
    assert tags == ("linux_x86_64",)


@pytest.mark.parametrize(
    ("arch", "macos", "packaging_arch", "packaging_version"),
    [
        ("arm64", "14.5", "arm64", (14, 0)),
        ("x86_64", "13.6.3", "x86_64", (13, 0)),
        ("aarch64", "15.1", "arm64", (15, 0)),
        ("x86_64", "10.15.7", "x86_64", (10, 15)),
    ],
)
def test_describe_macos_as_packaging_does(
    arch: str, macos: str, packaging_arch: str, packaging_version: tuple[int, int]
) -> None:
    tags = python.describe(
        "3.12", os_name="macos", arch=arch, libc_version=None, macos_version=macos
    ).platform_tags
    assert tags == tuple(ptags.mac_platforms(packaging_version, packaging_arch))


@pytest.mark.parametrize(
    ("arch", "tag"), [("x86_64", ("win_amd64",)), ("aarch64", ("win_arm64",)), ("s390x", ())]
)
def test_describe_windows(arch: str, tag: tuple[str, ...]) -> None:
    report = python.describe(
        "3.13",
        os_name="windows",
        arch=arch,
        libc_version=None,
        macos_version=None,
        free_threaded=True,
    )
    assert report.platform_tags == tag
    assert report.abi_tags == ("cp313t", "none") and report.free_threaded


@pytest.mark.skipif(sys.platform != "linux", reason="compares manylinux tags with packaging")
def test_describe_agrees_with_packaging_for_this_interpreter() -> None:
    live = python.probe(LiveIO())
    libc = os.confstr("CS_GNU_LIBC_VERSION")
    assert libc and libc.startswith("glibc ")
    described = python.describe(
        live.version,
        os_name="linux",
        arch=live.platform_tags[0][6:],
        libc_version=libc.split()[1],
        macos_version=None,
        free_threaded=live.free_threaded,
    )
    assert described.platform_tags == live.platform_tags
    assert described.abi_tags == live.abi_tags
    assert described.interpreter_tag == live.interpreter_tag


def test_live_probe_is_this_interpreter() -> None:
    report = python.probe(LiveIO())
    assert report.version == ".".join(map(str, sys.version_info[:3]))
    assert report.executable == sys.executable
    assert report.is_virtualenv is (sys.prefix != sys.base_prefix)
    assert report.platform_tags == tuple(ptags.platform_tags())
    assert report.free_threaded is bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert report.reasons == ()


def test_recorded_tags_are_used_as_recorded(tmp_path: Path) -> None:
    host = copy_host("cpu-cloud-vm", tmp_path)
    set_fact(
        host,
        "python",
        {
            "version": "3.11.2",
            "implementation": "cpython",
            "interpreter_tag": "cp311",
            "abi_tags": ["cp311", "none"],
            "platform_tags": ["linux_x86_64"],
            "prefix": "/usr",
            "base_prefix": "/usr",
        },
    )
    report = python.probe(ReplayIO(host))
    assert report.platform_tags == ("linux_x86_64",) and report.abi_tags == ("cp311", "none")
    assert not report.is_virtualenv


def test_hand_made_host_gets_described_tags() -> None:
    report = python.probe(ReplayIO(HOSTS / "mac-m3"))
    assert report.platform_tags == tuple(ptags.mac_platforms((14, 0), "arm64"))
    assert report.is_virtualenv and report.prefix == "/Users/dev/proj/.venv"


@pytest.mark.parametrize("fact", [None, {"implementation": "cpython"}, "3.12"])
def test_broken_python_fact_is_a_reason(tmp_path: Path, fact: object) -> None:
    host = empty_host(tmp_path)
    if fact is not None:
        set_fact(host, "python", fact)
    report = python.probe(ReplayIO(host))
    assert report.version == "0.0.0" and report.platform_tags == ()
    assert report.reasons and report.reasons[0].startswith("python: ")
