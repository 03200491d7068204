"""Creating an environment: finding uv and the interpreter, then the environment itself, made
in this process for this interpreter, else by `uv venv` or `python -m venv`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from torchenv.agent.base.errors import EnvironmentBuildError, os_error
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.env.install import _check, _start
from torchenv.agent.env.venv import python_in


def interpreter_version(python: str) -> str | None:
    """ "3.11" for an interpreter path, or None when it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_interpreter(minor: str | None) -> str:
    """An interpreter of the lock's Python X.Y: this one, pythonX.Y on PATH, or uv's."""
    if minor is None or f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return sys.executable
    candidates = [shutil.which(f"python{minor}")]
    uv = find_uv()
    if uv:
        found = subprocess.run(
            [uv, "python", "find", "--no-python-downloads", minor],
            capture_output=True,
            text=True,
            check=False,
        )
        candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    for candidate in candidates:
        if candidate and interpreter_version(candidate) == minor:
            return candidate
    raise EnvironmentBuildError(
        f"no Python {minor} interpreter here; the lock was made for Python {minor}",
        hint=f"install Python {minor} (e.g. `uv python install {minor}`), or lock for this "
        f"interpreter with `--python {sys.version_info[0]}.{sys.version_info[1]}`",
        details={"python": minor},
    )


def create_venv(env_dir: Path, python: str, uv: str | None) -> list[str]:
    """The command that creates an empty environment in place (no pip: the installer is outside)."""
    if uv:
        return [
            uv,
            "venv",
            "--quiet",
            "--no-project",
            "--no-config",
            "--python",
            python,
            str(env_dir),
        ]
    return [python, "-m", "venv", "--without-pip", str(env_dir)]


def made_here(python: str, env_dir: Path) -> bool:
    """Whether the environment is made in this process, by the standard library's venv as
    `python -m venv --without-pip` makes it: for this interpreter only (another process and
    its start-up saved on the critical path), and not in a directory whose path holds the PATH
    separator, which that module refuses (uv does not)."""
    return python == sys.executable and os.pathsep not in str(env_dir)


def make_here(env_dir: Path, made: Callable[[], None]) -> None:
    """Make an empty environment of this interpreter in place, calling `made` once its
    interpreter runs (before the activation scripts are written); EnvironmentBuildError (its
    hint fitting the errno) when it cannot be made. Backup tools and git are told to skip it,
    as `uv venv` tells them."""
    import venv

    class Builder(venv.EnvBuilder):
        def setup_python(self, context: SimpleNamespace) -> None:
            super().setup_python(context)
            made()

    try:
        Builder(symlinks=os.name != "nt", with_pip=False).create(env_dir)
        (env_dir / "CACHEDIR.TAG").write_text(CACHEDIR_TAG)  # backup tools skip it, as uv's
        (env_dir / ".gitignore").write_text("*\n")  # git too: it may lie in a project
    except OSError as exc:
        raise os_error("create the virtual environment at", env_dir, exc) from exc
    except Exception as exc:  # in a thread: whatever it was, the sync must hear of it
        raise EnvironmentBuildError(
            f"creating the virtual environment at {env_dir} failed: {type(exc).__name__}: {exc}",
            hint="the active environment is untouched; run again, and report this if it stays",
            details={"path": str(env_dir)},
        ) from exc


CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n"


class Creation:
    """An empty environment being made while the wheels download: `start`, then `join`
    before installing (it raises what a failed creation always raised), or `stop`.

    This interpreter's environment is made in the creation's thread (`made_here`), another
    one's by `uv venv` (or `python -m venv`). With `warm` (uv only) the new interpreter is
    then asked for by `uv python find` as soon as it runs, so the install finds uv's answer in
    its cache instead of querying the interpreter on the critical path. That step writes only
    uv's cache, and a failure there is no failure: the install asks the interpreter then.
    """

    def __init__(self, env_dir: Path, python: str, uv: str | None, *, warm: bool) -> None:
        self.env_dir = env_dir
        self.python = python
        self.uv = uv
        self.warm = warm and uv is not None
        self._lock = threading.Lock()
        self._running: subprocess.Popen[str] | None = None
        self._finding: subprocess.Popen[str] | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._made: tuple[subprocess.Popen[str], str, str] | None = None
        self._failed: EnvironmentBuildError | None = None

    def start(self) -> Creation:
        """Start creating; EnvironmentBuildError at once when the command cannot run."""
        if not made_here(self.python, self.env_dir):
            self._running = _start(create_venv(self.env_dir, self.python, self.uv))
        self._thread = threading.Thread(target=self._wait, name="torchenv-venv", daemon=True)
        self._thread.start()
        return self

    def _wait(self) -> None:
        process = self._running
        try:
            if process is None:
                make_here(self.env_dir, self._warm_up)
            else:
                out, err = process.communicate()
                self._made = (process, out, err)
                if process.returncode == 0:
                    self._warm_up()
        except EnvironmentBuildError as exc:
            self._failed = exc
        finally:
            if self._finding is not None:
                self._finding.wait()

    def _warm_up(self) -> None:
        if not self.warm:
            return
        with self._lock:
            if self._stopped:
                return
            try:
                self._finding = subprocess.Popen(
                    [str(self.uv), "python", "find", "--quiet", "--no-config",
                     "--no-python-downloads", str(python_in(self.env_dir))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                )  # fmt: skip
            except OSError:
                return
            self._running = self._finding

    def join(self) -> None:
        """Wait for the environment; EnvironmentBuildError when creating it failed."""
        assert self._thread is not None
        self._thread.join()
        if self._failed is not None:
            raise self._failed
        if self._made is not None:
            _check(*self._made, "creating the virtual environment")

    def stop(self) -> None:
        """Kill what still runs and wait for it (an interrupted or failed sync)."""
        with self._lock:
            self._stopped = True
            running = self._running
        if running is not None and running.poll() is None:
            running.kill()
        if self._thread is not None:
            self._thread.join()
