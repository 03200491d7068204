"""The compiled code of the methods `dataclasses` writes for each class, kept between runs beside
torchenv's bytecode, as Python keeps the modules' own.

A dataclass's `__init__`, `__repr__`, `__eq__`, `__hash__` and frozen `__setattr__` are written
as source text and compiled when its module is imported: about 0.9 ms per class, some 40 ms of a
`select` and 70 ms of a `lock` (each loads 50-80 of them). `install()` has `dataclasses` compile
each text once: the code objects are kept in `__pycache__/dataclass-methods.TAG.marshal`
beside this module (under sys.pycache_prefix where one is set, as its bytecode), keyed by
the exact text compiled (so an entry is right or unused, never stale), and written back at
exit where new texts were compiled. It is written where Python writes bytecode: not under
PYTHONDONTWRITEBYTECODE (-B), not where the directory cannot be written; a file that is
unreadable, damaged or from another interpreter is ignored and replaced.

Only the CLI process installs it (agent/cli/entry.py), and only on the interpreters whose
`dataclasses` compiles its texts with `exec(text, globals, namespace)` (3.10-3.13): the name
`exec` in that module then finds this one, which compiles the text as the builtin would (no
future flags inherited, `<string>` as the file name) and runs the code with the same globals.
"""

from __future__ import annotations

import builtins
import sys
from types import CodeType
from typing import Any

MAGIC = b"torchenv-dataclass-methods 1\n"
MAX_FILE = 8 << 20  # bytes read at most: a larger file is not ours
MAX_ENTRIES = 2048  # texts kept (about 2 MiB, 10 ms to load); past it only this run's are written
VERSIONS = ((3, 10), (3, 11), (3, 12), (3, 13))  # whose dataclasses.py was read for this

_codes: dict[str, CodeType] = {}
_used: set[str] = set()
_compiled = 0  # texts compiled in this process (not found in the file)


def cache_file() -> str | None:
    """This interpreter's file (None where Python has no bytecode tag: nothing is kept)."""
    import os

    tag = sys.implementation.cache_tag
    if not tag:  # None where the interpreter writes no bytecode
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    name = f"dataclass-methods.{tag}.marshal"
    prefix = sys.pycache_prefix  # PYTHONPYCACHEPREFIX / -X pycache_prefix: bytecode goes there
    if prefix:  # as importlib places it: the source directory's path under the prefix
        return os.path.join(prefix, os.path.splitdrive(here)[1].lstrip(os.sep), name)
    return os.path.join(here, "__pycache__", name)


def install(path: str | None = None) -> bool:
    """Have `dataclasses` compile through the code kept in `path` (default: cache_file()) from
    now on; False where it is not done (another interpreter, or already done). Classes made
    before are unaffected."""
    import dataclasses

    if sys.version_info[:2] not in VERSIONS or "exec" in vars(dataclasses):
        return False
    path = path or cache_file()
    if path is None:
        return False
    _codes.update(_read(path))
    dataclasses.exec = _exec  # type: ignore[attr-defined]
    import atexit

    atexit.register(_write, path)
    return True


def stats() -> dict[str, int]:
    """What this process found kept and compiled itself (tests, benchmarks)."""
    return {"kept": len(_codes), "used": len(_used), "compiled": _compiled}


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    global _compiled
    if type(source) is str:
        code = _codes.get(source)
        if code is None:
            code = compile(source, "<string>", "exec", dont_inherit=True)
            _codes[source] = code
            _compiled += 1
        _used.add(source)
        source = code
    builtins.exec(source, globals, locals)


def _header() -> bytes:
    import _frozen_importlib_external as external  # always loaded: the import system's own

    magic: bytes = external.MAGIC_NUMBER  # the bytecode's version, as .pyc files carry it
    return MAGIC + magic + b"\n"


def _read(path: str) -> dict[str, CodeType]:
    import marshal

    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE + 1)
    except OSError:
        return {}
    header = _header()
    if len(data) > MAX_FILE or not data.startswith(header):
        return {}
    try:
        table = marshal.loads(data[len(header) :])
    except (EOFError, ValueError, TypeError):
        return {}
    if type(table) is not dict or not all(
        type(k) is str and type(v) is CodeType for k, v in table.items()
    ):
        return {}
    return table


def _write(path: str) -> None:
    """Write the texts back where this run compiled new ones (at exit, atomically)."""
    if not _compiled or sys.dont_write_bytecode:
        return
    import marshal
    import os

    kept = _codes if len(_codes) <= MAX_ENTRIES else {t: _codes[t] for t in _used}
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(_header() + marshal.dumps(kept))
        os.replace(temporary, path)
    except (OSError, ValueError):
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(temporary)
