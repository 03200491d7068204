"""The fault suite, lock and config input: every bad input is exit 1 with one paragraph.

A row is (name, what to make in a fresh directory, the command, the words the message holds).
Rows that feed endless input run under an address-space limit: an unbounded read fails there
instead of growing until the kernel ends it. After every row nothing is left outside the
row's directory, and nothing named `outside` exists.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.faults import (
    HOST,
    TORCHENV,
    Tree,
    edit_lock,
    expect_clean_failure,
    file_size_limit,
    memory_limit,
    real_lock,
    run,
    wheel_entry,
)

pytestmark = pytest.mark.e2e

Make = Callable[[Path], list[str]]  # prepares a directory, returns the torchenv arguments


@dataclass(frozen=True)
class Row:
    name: str
    make: Make
    words: tuple[str, ...]
    bounded: bool = False  # endless input: run under an address-space limit


def _host_file(tmp: Path) -> str:
    path = tmp / "host.json"
    path.write_text(json.dumps(HOST.to_json()))
    return str(path)


def _sync_edited(edit: Callable[[Path, dict[str, object]], None]) -> Make:
    def make(tmp: Path) -> list[str]:
        lock = real_lock(tmp / "lock")
        edited = edit_lock(lock, tmp / "edited.toml", lambda doc: edit(tmp, doc))
        return ["sync", str(edited), "--host-report", _host_file(tmp), "--prefix", "env"]

    return make


def _wheel(field: str, value: Callable[[Path], object]) -> Make:
    return _sync_edited(
        lambda tmp, doc: wheel_entry(doc, "filelock").__setitem__(field, value(tmp))
    )


def _tool_python(tmp: Path, doc: dict[str, object]) -> None:
    doc["tool"]["torchenv"]["python"] = 3.11  # type: ignore[index]


def _file(name: str, data: bytes, *args: str) -> Make:
    def make(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(data)
        return [a.replace("{tmp}", str(tmp)) for a in args]

    return make


def _sparse(name: str, size: int, *args: str) -> Make:
    def make(tmp: Path) -> list[str]:
        with (tmp / name).open("wb") as fh:
            fh.truncate(size)  # a hole: no disk used, endless to an unbounded reader
        return list(args)

    return make


def _recording(files: dict[str, str]) -> Make:
    def make(tmp: Path) -> list[str]:
        (tmp / "rec").mkdir()
        for name, text in files.items():
            (tmp / "rec" / name).write_text(text)
        return ["probe", "--replay", str(tmp / "rec")]

    return make


def _args(*args: str) -> Make:
    return lambda tmp: [a.replace("{tmp}", str(tmp)) for a in args]


DESCRIBED = ("--os", "linux", "--arch", "x86_64", "--python", "3.12")
LOCK_ROWS = [
    # 1. names from a lock land only under the cache
    Row("wheel name climbs out of the cache",
        _wheel("name", lambda _t: "../../../../outside/filelock-1.0-py3-none-any.whl"),
        ("'../../../../outside/filelock-1.0-py3-none-any.whl'", "regenerate")),
    Row("wheel name is an absolute path",
        _wheel("name", lambda t: str(t / "outside" / "filelock-1.0-py3-none-any.whl")),
        ("outside/filelock-1.0-py3-none-any.whl'", "regenerate")),
    # 2. a source is read no further than the locked size
    Row("wheel URL is an endless file", _wheel("url", lambda _t: "file:///dev/zero"),
        ("does not match the lock",), bounded=True),
    Row("wheel size of a terabyte, from an endless file",
        _sync_edited(lambda _t, doc: wheel_entry(doc, "filelock").update(
            size=10**12, url="file:///dev/zero")),
        ("size of 1000000000000 bytes",), bounded=True),
    Row("wheel size below one byte", _wheel("size", lambda _t: -5), ("size", "regenerate")),
    # 9. [tool.torchenv] python as a number
    Row("lock's python is a number", _sync_edited(_tool_python), ("python is 3.11", '"3.12"')),
    # 11. an invalid URL is the lock's fault, not the cache's
    Row("wheel URL is relative", _wheel("url", lambda _t: "wheels/filelock-1.0-py3-none-any.whl"),
        ("'wheels/filelock-1.0-py3-none-any.whl'", "http")),
    Row("wheel URL is a directory", _wheel("url", lambda t: t.as_uri()),
        ("URL for filelock", "names a directory")),
    Row("wheel URL is empty", _wheel("url", lambda _t: ""), ("url", "regenerate")),
]  # fmt: skip

INPUT_ROWS = [
    # 2. requirement files and configuration files are read within bounds
    Row("lock -r /dev/zero", _args("lock", "-r", "/dev/zero", *DESCRIBED),
        ("larger than 4 MiB",), bounded=True),
    Row("pyproject.toml of 64 GiB", _sparse("pyproject.toml", 64 << 30, "config"),
        ("larger than 4 MiB",), bounded=True),
    Row("--host-report /dev/zero", _args("select", "--host-report", "/dev/zero"),
        ("larger than 4 MiB",), bounded=True),
    # 9. exit 2 where the input is at fault
    Row("lock -r binary file", _file("reqs.txt", b"torch\x00\xff\xfe\n", "lock", "-r",
                                     "{tmp}/reqs.txt", *DESCRIBED), ("not UTF-8",)),
    Row("lock -r latin-1 file", _file("reqs.txt", "torch  # café\n".encode("latin-1"), "lock",
                                      "-r", "{tmp}/reqs.txt", *DESCRIBED), ("not UTF-8",)),
    Row("pyproject.toml with tool = 5", _file("pyproject.toml", b"tool = 5\n", "config"),
        ("tool in", "not a table")),
    Row("binary pyproject.toml", _file("pyproject.toml", b"\xff\xfe\x00[tool]\n", "select"),
        ("pyproject.toml is not UTF-8",)),
    Row("binary agent config", _file("agent.toml", b"\x89PNG\r\n\x1a\n\xff",
                                     "agent", "--once", "--config", "{tmp}/agent.toml"),
        ("agent.toml is not UTF-8",)),
    Row("--replay manifest with missing = 7", _recording({"manifest.json": '{"missing": 7}'}),
        ("missing is not an array",)),
    Row("rollback --prefix /", _args("rollback", "--prefix", "/"), ("root directory",)),
    Row("a 300-character prefix component", _args("rollback", "--prefix", "p" * 300),
        ("last component of 300 bytes", "shorter --prefix")),
    Row("a prefix over 4096 characters",
        _args("rollback", "--prefix", "/".join(["d" * 200] * 21)),
        ("longer than the file system allows",)),
    Row("entrypoint -- ''", _args("entrypoint", "--", ""), ("empty string",)),
    # 10. silent coercions and acceptances
    Row("prefix given as an array", _file("pyproject.toml",
                                          b'[tool.torchenv]\nprefix = ["a", "b"]\n', "config"),
        ("prefix = ['a', 'b']", "TOML array", "pyproject.toml")),
    Row("cache-dir given as a number", _file("pyproject.toml",
                                             b"[tool.torchenv]\ncache-dir = 5\n", "config"),
        ("cache-dir = 5", "TOML integer", "must be a string")),
    Row("--replay of an empty directory", lambda t: (t / "e").mkdir() or ["probe", "--replay", "e"],
        ("not a recorded host",)),
    Row("--replay /proc", _args("probe", "--replay", "/proc"), ("not a recorded host",)),
    Row("a torch marker that excludes the target",
        _args("lock", "torch; sys_platform == 'win32'", *DESCRIBED),
        ("excludes the target", "marker is false")),
    Row("--index-url without a host", _args("select", *DESCRIBED),
        ("index-url", "names no host")),
]  # fmt: skip
ROW_ENV = {"--index-url without a host": {"TORCHENV_INDEX_URL": "http://"}}


@pytest.mark.parametrize("row", LOCK_ROWS + INPUT_ROWS, ids=lambda r: r.name)
def test_bad_input_is_exit_1_with_a_paragraph(tmp_path: Path, row: Row) -> None:
    work = tmp_path / "work"
    work.mkdir()
    args = row.make(work)
    before = Tree.of(tmp_path)
    done = run(args, work, env=ROW_ENV.get(row.name), preexec=memory_limit() if row.bounded else
               None, timeout=60)  # fmt: skip
    expect_clean_failure(done, *row.words)
    assert not list(tmp_path.rglob("outside*")), "a file was written outside torchenv's dirs"
    written = [p for p in before.added() if not p.startswith(("work/cache", "work/env"))]
    assert written == [], written


def test_probe_record_on_a_full_disk_says_so_and_leaves_nothing_half_written(
    tmp_path: Path,
) -> None:
    done = run(["probe", "--record", "rec"], tmp_path, preexec=file_size_limit(1024))
    expect_clean_failure(done, "cannot record into", "File too large")
    assert not list((tmp_path / "rec").glob("*.tmp"))


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    """`torchenv catalog show | head -1`: the reader went away before torchenv wrote."""
    env = {**os.environ, "TORCHENV_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [*TORCHENV, "catalog", "show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # no reader: the first write fails with EPIPE
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert err == ""


def test_a_prefix_inside_torchenvs_own_tree_is_refused_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """sync L --prefix Q, then sync L --prefix Q.torchenv/envs/<active> --force, then sync Q."""
    lock, host = real_lock(tmp_path / "lock"), _host_file(tmp_path)
    first = run(["sync", str(lock), "--prefix", "Q", "--host-report", host], tmp_path)
    assert first.returncode == 0, first.stderr
    active = os.readlink(tmp_path / "Q").rsplit("/", 1)[-1]
    inner = f"Q.torchenv/envs/{active}"
    nested = run(["sync", str(lock), "--prefix", inner, "--force", "--host-report", host],
                 tmp_path)  # fmt: skip
    expect_clean_failure(nested, "is inside", "Q.torchenv", "torchenv's own directory")
    holding = run(["sync", str(lock), "--prefix", ".", "--force", "--host-report", host], tmp_path)
    expect_clean_failure(holding)
    again = run(["sync", str(lock), "--prefix", "Q", "--host-report", host], tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / inner / "bin" / "python").exists()  # the environment before it: kept


def test_an_ignored_driver_override_is_named_where_selection_refuses_cuda(
    tmp_path: Path,
) -> None:
    env = {"TORCHENV_CUDA_DRIVER_VERSION": "abc", "TORCHENV_GPU_COMPUTE_CAPABILITY": "8.6"}
    done = run(["select", "--explain"], tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    cuda = [line for line in done.stdout.splitlines() if " cu1" in line]
    assert cuda and all("TORCHENV_CUDA_DRIVER_VERSION='abc'" in line for line in cuda)
    assert all("ignored" in line for line in cuda)
