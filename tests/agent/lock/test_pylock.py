"""The PEP 751 file: round trip, atomic writes, and clear refusals of broken files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import tomli_w
import tomllib
from helpers import TESTS
from helpers.hosts import linux_host, mac_host

from torchenv.agent.base.errors import LockFileError
from torchenv.agent.lock import pylock
from torchenv.agent.lock.pylock import (
    LockedPackage,
    LockedWheel,
    PyLock,
    dumps,
    read_pylock,
    to_toml_dict,
    write_pylock,
)
from torchenv.agent.lock.resolvers.target import Target, target_of

SHA = "ab" * 32


def sample() -> PyLock:
    torch = LockedPackage(
        name="torch",
        version="2.6.0+cu126",
        index="https://download.pytorch.org/whl/cu126",
        wheels=(
            LockedWheel(
                name="torch-2.6.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl",
                url="https://download.pytorch.org/whl/cu126/torch-2.6.0%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl",
                size=123456,
                sha256=SHA,
            ),
        ),
        dependencies=("filelock", "nvidia-cublas-cu12"),
    )
    filelock = LockedPackage(
        name="filelock",
        version="3.16.1",
        index="https://pypi.org/simple",
        wheels=(
            LockedWheel(
                "filelock-3.16.1-py3-none-any.whl",
                "https://files.example/filelock-3.16.1-py3-none-any.whl",
                16000,
                "cd" * 32,
            ),
        ),
    )
    return PyLock(
        packages=(torch, filelock),
        requires_python="==3.11.*",
        environments=("sys_platform == 'linux' and platform_machine == 'x86_64'",),
        tool_torchenv={
            "fingerprint": "0123",
            "target": {"os": "linux", "libc": [None, "2.28"], "cuda": None},
        },
    )


def test_round_trip_keeps_every_field_and_sorts_packages(tmp_path: Path) -> None:
    path = tmp_path / "pylock.toml"
    write_pylock(path, sample())
    back = read_pylock(path)
    assert back.names == ("filelock", "torch")
    assert back.package("torch") == sample().package("torch")
    assert back.package("FileLock") == sample().package("filelock")
    assert back.requires_python == "==3.11.*"
    assert back.created_by == "torchenv" and back.lock_version == "1.0"
    # TOML has no null: None keys vanish, None inside arrays becomes "".
    assert back.tool_torchenv["target"] == {"os": "linux", "libc": ["", "2.28"]}


def test_file_uses_pep751_key_names(tmp_path: Path) -> None:
    doc = tomllib.loads(dumps(sample()))
    assert list(doc)[:4] == ["lock-version", "environments", "requires-python", "created-by"]
    wheel = doc["packages"][1]["wheels"][0]
    assert set(wheel) == {"name", "url", "size", "hashes"}
    assert wheel["hashes"] == {"sha256": SHA}
    assert doc["packages"][1]["index"] == "https://download.pytorch.org/whl/cu126"
    assert doc["tool"]["torchenv"]["fingerprint"] == "0123"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pylock.toml"
    path.write_text("old", encoding="utf-8")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(LockFileError, match="No space left"):
        write_pylock(path, sample())
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["pylock.toml"]


def _broken(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pylock.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: "lock-version = [", "not a TOML file"),
        (lambda t: t.replace('lock-version = "1.0"', 'lock-version = "2.0"'), "lock-version '2.0'"),
        (lambda t: t.replace('lock-version = "1.0"\n', ""), "no lock-version"),
        (lambda t: t.replace(f'sha256 = "{SHA}"', 'md5 = "00"'), "no sha256 hash"),
        (lambda t: t.replace(f'sha256 = "{SHA}"', 'sha256 = "xyz"'), "no sha256 hash"),
        (lambda t: t.replace("size = 123456", 'size = "big"'), r"expected int.*size"),
        (lambda t: t.split("[[packages]]")[0], "packages"),
        (lambda t: t.replace('created-by = "torchenv"\n', ""), "created-by"),
    ],
    ids=[
        "not-toml",
        "unknown-version",
        "no-version",
        "no-sha256",
        "bad-sha256",
        "bad-size",
        "no-packages",
        "no-created-by",
    ],
)
def test_corrupt_or_incomplete_files_are_refused_with_a_hint(
    tmp_path: Path, edit: object, message: str
) -> None:
    text = dumps(sample())
    path = _broken(tmp_path, edit(text))  # type: ignore[operator]
    with pytest.raises(LockFileError, match=message) as info:
        read_pylock(path)
    assert info.value.hint and "torchenv" in info.value.hint


def test_missing_file_is_a_lock_error(tmp_path: Path) -> None:
    with pytest.raises(LockFileError, match="cannot read"):
        read_pylock(tmp_path / "absent.toml")


# ---------------------------------------------------------------- any valid PEP 751 lock

# `uv pip compile pyproject.toml -o pylock.toml` (uv 0.13.9) against the test mirror

UV_LOCK = TESTS / "locks" / "uv-cpu-torch" / "pylock.toml"


def linux_target(python: str = "3.11") -> Target:
    return target_of(linux_host(python=python))


def test_a_lock_written_by_uv_is_read(tmp_path: Path) -> None:
    """uv leaves out `index`, `size` and the wheel's `name` (PEP 751 makes them optional)."""
    lock = read_pylock(UV_LOCK)
    torch = lock.package("torch")
    assert torch is not None and torch.index is None and torch.version == "2.13.0+cpu"
    assert torch.wheel.name == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert torch.wheel.url.startswith("http://mirror.example/whl/cpu/torch-2.13.0%2Bcpu-")
    assert torch.wheel.size is None and len(torch.wheel.sha256) == 64
    assert lock.tool_torchenv == {} and lock.created_by == "uv"
    chosen = lock.for_target(linux_target())
    assert set(chosen.names) == set(lock.names) and "jinja2" in chosen.names


def several_wheels() -> str:
    doc = to_toml_dict(sample())
    torch = doc["packages"][1]
    base = "https://download.pytorch.org/whl/cpu/"
    names = [
        "torch-2.6.0+cu126-cp311-cp311-win_amd64.whl",
        "torch-2.6.0+cu126-cp312-cp312-manylinux_2_28_x86_64.whl",
        "torch-2.6.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.6.0+cu126-cp311-cp311-macosx_11_0_arm64.whl",
    ]
    torch["wheels"] = [
        {"name": n, "url": base + n.replace("+", "%2B"), "hashes": {"sha256": f"{i:064x}"}}
        for i, n in enumerate(names)
    ]
    doc["packages"].append(
        {
            "name": "pywin32",
            "version": "311",
            "marker": "sys_platform == 'win32'",
            "wheels": [
                {
                    "url": "https://files.example/pywin32-311-cp311-cp311-win_amd64.whl",
                    "hashes": {"sha256": "ef" * 32},
                }
            ],
        }
    )
    del doc["environments"], doc["requires-python"]
    return tomli_w.dumps(doc)


def test_several_wheels_per_package_the_target_gets_its_own_by_tags_and_markers(
    tmp_path: Path,
) -> None:
    lock = read_pylock(_broken(tmp_path, several_wheels()))
    assert len(lock.package("torch").wheels) == 4  # type: ignore[union-attr]
    linux = lock.for_target(linux_target())
    assert linux.names == ("filelock", "torch")  # pywin32's marker is false on Linux
    assert linux.package("torch").wheel.name.endswith("cp311-cp311-manylinux_2_28_x86_64.whl")  # type: ignore[union-attr]
    mac = lock.for_target(target_of(mac_host()))
    assert mac.package("torch").wheel.name.endswith("macosx_11_0_arm64.whl")  # type: ignore[union-attr]
    with pytest.raises(LockFileError, match="No wheel found matching"):
        lock.for_target(linux_target(python="3.13"))


def test_requires_python_and_environments_are_checked_for_the_target(tmp_path: Path) -> None:
    lock = read_pylock(_broken(tmp_path, dumps(sample())))
    with pytest.raises(LockFileError, match=re.escape("requirement '==3.11.*'")) as info:
        lock.for_target(linux_target(python="3.12"))
    assert "torchenv lock" in info.value.hint
    doc = to_toml_dict(sample())
    doc["environments"] = ["sys_platform == 'darwin'"]
    other = read_pylock(_broken(tmp_path, tomli_w.dumps(doc)))
    with pytest.raises(LockFileError, match="environments"):
        other.for_target(linux_target())


@pytest.mark.parametrize(
    "wheel",
    [
        {"name": "../../evil-1.0-py3-none-any.whl", "url": "https://x.example/evil.whl"},
        {"name": "sub/filelock-3.16.1-py3-none-any.whl", "url": "https://x.example/f.whl"},
        {"name": "..\\filelock-3.16.1-py3-none-any.whl", "url": "https://x.example/f.whl"},
        {"url": "https://x.example/a/%2E%2E%2Ffilelock-3.16.1-py3-none-any.whl"},
        {"name": "filelock-3.16.1-py3-none-any.whl", "url": "ftp://x.example/f.whl"},
        {"name": "filelock-3.16.1-py3-none-any.whl", "url": "javascript:alert(1)"},
    ],
    ids=["dotdot", "subdir", "backslash", "encoded-dotdot", "ftp", "javascript"],
)
def test_unsafe_wheel_names_and_urls_are_refused(tmp_path: Path, wheel: dict[str, str]) -> None:
    doc = to_toml_dict(sample())
    doc["packages"][0]["wheels"] = [{**wheel, "hashes": {"sha256": "cd" * 32}}]
    with pytest.raises(LockFileError, match=r"not a wheel file name|torchenv fetches only|valid"):
        read_pylock(_broken(tmp_path, tomli_w.dumps(doc)))


def test_a_wheel_path_is_relative_to_the_lock(tmp_path: Path) -> None:
    doc = to_toml_dict(sample())
    doc["packages"][0]["wheels"] = [
        {"path": "wheels/filelock-3.16.1-py3-none-any.whl", "hashes": {"sha256": "cd" * 32}}
    ]
    lock = read_pylock(_broken(tmp_path, tomli_w.dumps(doc)))
    wheel = lock.package("filelock").wheel  # type: ignore[union-attr]
    assert wheel.url == (tmp_path / "wheels" / wheel.name).resolve().as_uri()


def test_a_newer_minor_lock_version_is_read_with_a_note_a_newer_major_is_refused(
    tmp_path: Path,
) -> None:
    text = dumps(sample())
    newer = read_pylock(_broken(tmp_path, text.replace('"1.0"', '"1.3"', 1)))
    assert newer.lock_version == "1.3" and "1.3" in newer.notes[0]
    assert read_pylock(_broken(tmp_path, text)).notes == ()
    with pytest.raises(LockFileError, match=r"torchenv reads 1\.x"):
        read_pylock(_broken(tmp_path, text.replace('"1.0"', '"2.0"', 1)))


def test_a_file_larger_than_any_lock_is_refused_without_reading_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pylock, "MAX_LOCK_BYTES", 1024)
    path = _broken(tmp_path, dumps(sample()) + "# " + "x" * 4096 + "\n")
    with pytest.raises(LockFileError, match="larger than"):
        read_pylock(path)


def test_a_package_whose_target_source_is_an_sdist_cannot_be_installed(tmp_path: Path) -> None:
    doc = to_toml_dict(sample())
    del doc["packages"][0]["wheels"]
    doc["packages"][0]["sdist"] = {
        "url": "https://files.example/filelock-3.16.1.tar.gz",
        "hashes": {"sha256": "cd" * 32},
    }
    lock = read_pylock(_broken(tmp_path, tomli_w.dumps(doc)))
    with pytest.raises(LockFileError, match="wheels only"):
        lock.for_target(linux_target())
