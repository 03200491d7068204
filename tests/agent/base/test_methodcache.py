"""The methods dataclasses writes are compiled once and kept (agent/base/methodcache.py): the
classes made through the kept code are the classes made without it, and a bad, foreign or
unwritable file costs only the time it would have saved."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from torchenv.agent.base import methodcache

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] not in methodcache.VERSIONS, reason="not installed on this Python"
)

# Made after install (or not): torchenv's own dataclasses and one of the program's, described
# by what each generated method does and by its code.
PROGRAM = """
import dataclasses, hashlib, inspect, json, sys
from torchenv.agent.base import methodcache
installed = methodcache.install(sys.argv[1]) if sys.argv[1] != "-" else False
from torchenv.probes import report
from torchenv.backends.select import model
from torchenv.agent.lock import pylock

@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: str = "a"
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)

p = Point(1)
try:
    p.x = 2
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
described = {"Point": {"repr": repr(p), "eq": p == Point(1, "a"), "frozen": frozen,
                       "hash": hash(p) == hash(Point(1)),
                       "signature": str(inspect.signature(Point))}}
GENERATED = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__")

def code_of(method):
    code = getattr(getattr(method, "__wrapped__", method), "__code__", None)
    return code and hashlib.sha256(marshal.dumps(code)).hexdigest()

for module in (report, model, pylock):
    for name, cls in sorted(vars(module).items()):
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) \
                and cls.__module__ == module.__name__:
            methods = {m: getattr(cls, m) for m in GENERATED
                       if getattr(cls, m, None) is not getattr(object, m, None)}
            described[name] = {"signature": str(inspect.signature(cls)),
                               "code": {m: code_of(f) for m, f in methods.items()}}
print(json.dumps({"installed": installed, "classes": described, "stats": methodcache.stats()}))
""".replace("import dataclasses, hashlib", "import dataclasses, hashlib, marshal")


def made(cache: Path | str, **env: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(cache)], capture_output=True,
                          text=True, check=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "", **env})  # fmt: skip
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_classes_made_through_the_kept_code_are_the_classes_made_without_it(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "methods.marshal"
    plain = made("-")
    first, again = made(cache), made(cache)
    assert not plain["installed"] and first["installed"] and again["installed"]
    assert len(plain["classes"]) > 15 and plain["classes"]["Point"]["frozen"]
    assert first["classes"] == plain["classes"] == again["classes"]
    assert first["stats"]["compiled"] > 50 and cache.is_file()  # compiled, then written
    assert again["stats"]["compiled"] == 0  # all from the file
    assert again["stats"]["used"] == first["stats"]["used"]


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", methodcache.MAGIC + b"\x00\x00\r\n\n" + marshal.dumps({}), None],
    ids=["empty", "not ours", "another interpreter's", "damaged"],
)
def test_a_bad_file_is_ignored_and_replaced(tmp_path: Path, content: bytes | None) -> None:
    cache = tmp_path / "methods.marshal"
    if content is None:  # a good file cut short
        made(cache)
        content = cache.read_bytes()[:-100]
    cache.write_bytes(content)
    assert made(cache)["stats"]["compiled"] > 50  # ignored: every text compiled again
    assert made(cache)["stats"]["compiled"] == 0  # and a good file written in its place


def test_nothing_is_written_under_dontwritebytecode_or_where_it_cannot_be(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "methods.marshal"
    assert made(cache, PYTHONDONTWRITEBYTECODE="1")["installed"]
    assert not cache.exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert made(blocked / "methods.marshal")["installed"]  # its directory cannot be made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no temporary left


def test_a_file_grown_past_its_bound_keeps_only_what_a_run_used(tmp_path: Path) -> None:
    cache = tmp_path / "methods.marshal"
    used = made(cache)["stats"]["used"]
    header, table = methodcache._header(), methodcache._read(str(cache))
    stale = {
        f"x{n} = {n}": compile(f"x{n} = {n}", "<string>", "exec")
        for n in range(methodcache.MAX_ENTRIES)
    }
    cache.write_bytes(header + marshal.dumps({**table, **stale}))
    extra = "dataclasses.dataclass(type('Q', (), {'__annotations__': {'q': int}}))"
    program = PROGRAM.replace("print(json.dumps", extra + "\nprint(json.dumps")
    subprocess.run([sys.executable, "-c", program, str(cache)], check=True, capture_output=True,
                   timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})  # fmt: skip
    kept = methodcache._read(str(cache))
    assert len(kept) == used + 3  # Q's __init__, __repr__, __eq__ (compiled in this run, so
    # written) and what the first run used; no stale entry
    assert not any(text.startswith("x") for text in kept)


def test_the_command_installs_it_before_its_dataclasses(tmp_path: Path) -> None:
    program = (
        "import atexit, dataclasses, sys\n"
        "from torchenv.agent.base import methodcache\n"
        "atexit.register(lambda: print(vars(dataclasses).get('exec') is methodcache._exec,"
        " methodcache.stats()['used'] > 20, flush=True))\n"
        "sys.argv = ['torchenv', 'select', '--json', '--offline', '--os', 'linux', '--arch',"
        " 'x86_64', '--python', '3.11']\n"
        "from torchenv.agent.cli.entry import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "TORCHENV_CACHE_DIR": str(tmp_path),
                               "TORCHENV_NO_FASTPATH": "1"})  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "True True", done.stderr


@pytest.mark.parametrize("prefix", [None, "pyc"])
def test_the_file_lies_where_python_writes_this_module_s_bytecode(
    tmp_path: Path, prefix: str | None
) -> None:
    """Beside the module's own .pyc: in __pycache__, or under PYTHONPYCACHEPREFIX."""
    code = (
        "import importlib.util, os, sys\n"
        "from torchenv.agent.base import methodcache\n"
        "pyc = importlib.util.cache_from_source(methodcache.__file__)\n"
        "print(os.path.dirname(pyc) == os.path.dirname(methodcache.cache_file()), pyc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    if prefix is not None:
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path / prefix)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    same, pyc = done.stdout.split()
    assert same == "True"
    assert pyc.startswith(str(tmp_path)) == (prefix is not None)  # the check can fail
