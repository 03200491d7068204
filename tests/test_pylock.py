"""The PEP 751 file: round trip, atomic writes, and clear refusals of broken files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomli_w
import tomllib

from torchenv.agent.errors import LockFileError
from torchenv.agent.pylock import (
    LockedPackage,
    LockedWheel,
    PyLock,
    dumps,
    read_pylock,
    to_toml_dict,
    write_pylock,
)

SHA = "ab" * 32


def sample() -> PyLock:
    torch = LockedPackage(
        name="torch",
        version="2.6.0+cu126",
        index="https://download.pytorch.org/whl/cu126",
        wheel=LockedWheel(
            name="torch-2.6.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl",
            url="https://download.pytorch.org/whl/cu126/torch-2.6.0%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl",
            size=123456,
            sha256=SHA,
        ),
        dependencies=("filelock", "nvidia-cublas-cu12"),
    )
    filelock = LockedPackage(
        name="filelock",
        version="3.16.1",
        index="https://pypi.org/simple",
        wheel=LockedWheel(
            "filelock-3.16.1-py3-none-any.whl",
            "https://files.example/filelock-3.16.1-py3-none-any.whl",
            16000,
            "cd" * 32,
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
        (lambda t: t.replace("size = 123456", 'size = "big"'), "size is missing"),
        (lambda t: t.split("[[packages]]")[0], "locks no packages"),
        (lambda t: t.replace('created-by = "torchenv"\n', ""), "created-by is missing"),
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


def test_a_package_with_two_wheels_is_refused(tmp_path: Path) -> None:
    doc = to_toml_dict(sample())
    doc["packages"][0]["wheels"].append(dict(doc["packages"][0]["wheels"][0], name="other.whl"))
    with pytest.raises(LockFileError, match="exactly one wheel"):
        read_pylock(_broken(tmp_path, tomli_w.dumps(doc)))


def test_missing_file_is_a_lock_error(tmp_path: Path) -> None:
    with pytest.raises(LockFileError, match="cannot read"):
        read_pylock(tmp_path / "absent.toml")
