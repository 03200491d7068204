"""The no-op `torchenv auto` (and a `select` answered before), decided before any heavy import.

After an `auto` through the console script that ended with a verified environment (a live
probe of this machine, no lock source), `fastpath_write` stores a stamp: the argv, the working
directory, the environment variables, the interpreter and torchenv's own files, what the
settings, the probe and the no-op check read (the size and sha256 of /proc and /sys entries'
text; the stat of other files: type, inode, device, size, mtime, ctime; a command's binary:
a script keeps nothing), the lock, state.json, the active
environment's directories and sentinel files (integrity.tree_facts), and the answer a no-op
prints. `run` compares all of that (a few dozen system calls, then one stat per directory of
the environment's runtime files and per sentinel: package `__init__.py`, `.pth`, native
libraries, `*.dist-info/`, `bin/`) and prints that answer. Creating, deleting, renaming or
replacing any runtime file changes its directory; an in-place write into a file that is no
sentinel does not, and is left to the full no-op path (one lstat per runtime file), `verify`
and the agent's integrity interval. Anything different, missing or unreadable falls through
to the full command, which deletes the stamp first, probes and compares, and writes a new
stamp only when its own no-op check would pass. A `select` is kept the same way (its
settings, host, catalog files and listings), and only until its oldest index page is older
than index-max-age. The module imports builtins only (marshal, not json: json costs more than
the whole check).
"""

# No `from __future__ import annotations`: importing __future__ costs a tenth of this check;
# the annotations naming typing-only names are strings instead.
import gc
import marshal
import os
import sys
import time

TYPE_CHECKING = False  # not typing's: its import alone costs a tenth of this check
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

FORMAT = 3  # 2: directories and sentinel files; 3: text inputs as (size, sha256)
# Variables a shell changes between identical commands, and the one Docker and Kubernetes set
# per container (HOSTNAME); torchenv reads none of them.
VOLATILE_ENV = frozenset({"_", "HOSTNAME", "OLDPWD", "PWD", "SHLVL"})
SENTINEL = 987654.3125  # stands for the check's seconds in the stored answer
TEXT_LIMIT = 4 << 20  # limits.MAX_REQUIREMENTS_FILE (not imported: builtins only)
# ELF, Mach-O (32, 64 bit, either byte order) and fat Mach-O: a program, not a script
BINARIES = frozenset({b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                      b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"})  # fmt: skip
UNKEPT = "unkept"  # observe's mark for an input no stamp may rest on
COMMANDS = frozenset({"auto", "select", "lock"})
# Set by cli.main for a console-script `auto` the check did not answer: the run may stamp.
ARMED = False
ARGV: list[str] = []
ENV = ""  # env_digest at start (libraries may change os.environ later)


def stamp_dir(env: "Mapping[str, str]") -> str:
    """Where stamps live: the default cache directory (settings may move the cache elsewhere;
    the stamps stay here, found without reading any setting)."""
    base = env.get("TORCHENV_CACHE_DIR") or env.get("CACHE_DIRECTORY", "").split(":")[0]
    if not base:
        xdg = env.get("XDG_CACHE_HOME", "").strip()
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(xdg or os.path.join(home, ".cache"), "torchenv")
    return os.path.join(base, "noop")


def stamp_path(env: "Mapping[str, str]", argv: "Sequence[str]", cwd: str) -> str:
    """One stamp per command line and working directory (FNV-1a: no hashlib import)."""
    digest = 0xCBF29CE484222325
    for byte in repr((list(argv), cwd)).encode("utf-8", "surrogateescape"):
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(stamp_dir(env), f"{argv[0]}-{digest:016x}.bin")


def env_digest(env: "Mapping[str, str]") -> str:
    """The sha256 of the environment variables (never their values on disk: they may be
    secrets)."""
    lines = sorted(f"{k}={v}" for k, v in env.items() if k not in VOLATILE_ENV)
    return sha256_hex("\0".join(lines).encode("utf-8", "surrogateescape"))


def sha256_hex(data: bytes) -> str:
    """sha256 from the interpreter's own small module where it has one (hashlib costs more)."""
    sha256: Any = None
    for name in ("_sha256", "_sha2"):  # 3.11's module, then 3.12's (named, not imported here)
        try:
            sha256 = __import__(name).sha256
            break
        except (ImportError, AttributeError):
            continue
    if sha256 is None:
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def interpreter() -> list[str]:
    return [sys.executable, sys.version, sys.platform]


def uname() -> list[str]:
    u = os.uname()
    return [u.sysname, u.release, u.version, u.machine]  # not the host name


def libc() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, OSError, ValueError):
        return None


def _sig(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def which(name: str, path: str | None) -> str | None:
    """The executable a command name runs (shutil.which's rule for a plain name; `~` expanded
    as host.python.find_interpreter_path does)."""
    name = os.path.expanduser(name)
    if os.sep in name:
        return name if os.access(name, os.X_OK) and not os.path.isdir(name) else None
    for directory in (path or os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def observe(kind: str, path: str) -> "Any":
    """What one input looks like now; the writer stores it, the check compares it."""
    try:
        if kind == "stat":
            return _sig(os.stat(path))
        if kind == "lstat":
            return _sig(os.lstat(path))
        if kind == "link":
            return os.readlink(path)
        if kind == "text":
            with open(path, "rb") as fh:  # its digest: a -r file may hold user:token@ URLs
                data = fh.read(TEXT_LIMIT + 1)
            return (
                (UNKEPT, "too large") if len(data) > TEXT_LIMIT else (len(data), sha256_hex(data))
            )
        if kind == "list":
            return sorted(os.listdir(path))
        if kind == "exists":
            return os.path.exists(path)
        if kind == "which":
            exe = which(path, os.environ.get("PATH"))
            if exe is None:
                return None
            try:
                with open(exe, "rb") as fh:  # through its links: a script (pyenv's shim) may
                    if fh.read(4) not in BINARIES:  # run another interpreter, itself unchanged
                        return (UNKEPT, "not a binary")
            except OSError:  # unreadable (mode 0711): what it is cannot be told
                return (UNKEPT, "unreadable")
            return (exe, _sig(os.stat(exe)))
    except OSError as exc:
        return ("error", exc.errno)
    raise ValueError(f"unknown input kind {kind}")


def tree_unchanged(
    root: str,
    dirs: "Sequence[tuple[str, int, int]]",
    sentinels: "Sequence[tuple[str, int, int, int]]",
) -> bool:
    """The environment's directories and sentinel files as the stamp has them (integrity's
    `tree_facts`): one stat each, relative to the open environment directory."""
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    stat = os.stat
    try:
        for path, mtime, ino in dirs:
            st = stat(path, dir_fd=fd, follow_symlinks=False)
            if st.st_mtime_ns != mtime or st.st_ino != ino:
                return False
        for path, size, mtime, ino in sentinels:
            st = stat(path, dir_fd=fd, follow_symlinks=False)
            if st.st_mtime_ns != mtime or st.st_ino != ino or st.st_size != size:
                return False
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def holds(stamp: "Mapping[str, Any]", argv: "Sequence[str]", cwd: str, env_sha: str) -> bool:
    """Every input the stamp names is as it was when the full no-op check last passed."""
    if stamp.get("format") != FORMAT or stamp.get("argv") != list(argv):
        return False
    if stamp.get("cwd") != cwd or stamp.get("python") != interpreter():
        return False
    if stamp.get("uname") != uname() or stamp.get("libc") != libc():
        return False
    expires = stamp.get("expires")
    if expires is not None and not time.time() < expires:
        return False  # an answer resting on index pages older than index-max-age by now
    if stamp.get("env") != env_sha:
        return False
    for kind, path, expected in stamp["inputs"]:
        if observe(kind, path) != expected:
            return False
    env_dir = stamp.get("env_dir")
    return env_dir is None or tree_unchanged(env_dir, stamp["dirs"], stamp["sentinels"])


def load(path: str) -> "dict[str, Any] | None":
    try:
        with open(path, "rb") as fh:
            value = marshal.loads(fh.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def run(argv: "Sequence[str]") -> bool:
    """Print the no-op answer and return True when nothing changed since the stamp was written;
    False (having printed nothing) for any other command, any difference and any doubt."""
    if not argv or argv[0] not in COMMANDS or sys.platform != "linux":
        return False
    env = os.environ
    if env.get("TORCHENV_NO_FASTPATH"):
        return False
    global ARMED, ARGV, ENV
    ARMED, ARGV, ENV = True, list(argv), env_digest(env)
    collecting = gc.isenabled()
    gc.disable()  # the stamp: thousands of tuples, no garbage; collecting them costs ~0.3 ms
    try:
        answer = _answer(argv, env)
    finally:
        if collecting:
            gc.enable()
    if answer is None:
        return False
    try:
        sys.stdout.write(answer)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away: stop quietly, as the full path does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    return True


def _answer(argv: "Sequence[str]", env: "Mapping[str, str]") -> "str | None":
    started = time.perf_counter()
    try:
        cwd = os.getcwd()
        stamp = load(stamp_path(env, argv, cwd))
        if stamp is None or not holds(stamp, argv, cwd, ENV):
            return None
        answer = str(stamp["answer"])
        spelled = stamp.get("spelled")
        if spelled is not None:  # auto's answer says how long the check took
            seconds = time.perf_counter() - started
            answer = answer.replace(str(spelled), format(seconds, str(stamp["format_spec"])))
    except Exception:  # a stamp of another shape, a vanished directory: the full path decides
        return None
    return answer
