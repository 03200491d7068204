"""The command's way out (entry.leave): what the interpreter's exit does still happens, and the
typer CLI's exit codes and messages come through it unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# stdout to a pipe is buffered, as users have it (this sandbox may set PYTHONUNBUFFERED)
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

# Each program does one thing whose effect the interpreter's exit brings about, then leaves.
PROGRAMS = {
    "a thread still running is joined": (
        "import threading, time\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    print('thread done', flush=True)\n"
        "threading.Thread(target=late).start()\n",
        "thread done\n",
    ),
    "a pool's queued work is done": (
        "import time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def job(n):\n"
        "    time.sleep(0.1)\n"
        "    print('job', n, flush=True)\n"
        "pool = ThreadPoolExecutor(1)\n"
        "for n in range(3):\n"
        "    pool.submit(job, n)\n",
        "job 0\njob 1\njob 2\n",
    ),
    "a temporary directory left open is removed": (
        "import tempfile, pathlib\n"
        "kept = tempfile.TemporaryDirectory(dir=ROOT)\n"
        "pathlib.Path(kept.name, 'f').write_text('x')\n",
        "",
    ),
    "logging's buffered records are written": (
        "import logging, logging.handlers\n"
        "to_file = logging.FileHandler(ROOT + '/log.txt')\n"
        "to_file.terminator = ''\n"
        "handler = logging.handlers.MemoryHandler(100, target=to_file)\n"
        "logging.getLogger('t').addHandler(handler)\n"
        "logging.getLogger('t').warning('logged')\n",
        "",
    ),
    "print's buffer is written": ("print('buffered', end='')\n", "buffered"),
}


LEAVE = "from torchenv.agent.cli.entry import leave\nleave(4)\n"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_way_out_does_what_the_interpreters_exit_does(name: str, tmp_path: Path) -> None:
    body, stdout = PROGRAMS[name]
    program = f"ROOT = {str(tmp_path)!r}\n{body}{LEAVE}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=False, timeout=60, env=BUFFERED)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (4, stdout, "")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == (["log.txt"] if "logging" in name else [])
    if "logging" in name:
        assert (tmp_path / "log.txt").read_text() == "logged"


def test_a_stdout_that_cannot_be_flushed_ends_as_the_interpreter_ends_it() -> None:
    """The reader went away before the buffer was written: the interpreter's own exit reports
    it (status 120), as it did before the way out skipped anything."""
    program = "print('x' * 100, end='')\nfrom torchenv.agent.cli.entry import leave\nleave(0)\n"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-c", program], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, check=False, timeout=60,
                              env=BUFFERED)  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 120
    assert "BrokenPipeError" in done.stderr


CLI = (
    "import sys\n"
    "from torchenv.agent.cli.entry import main\n"
    "sys.argv = ['torchenv', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.mark.parametrize(
    ("argv", "code", "stream", "text"),
    [
        (["--version"], 0, "stdout", "torchenv"),
        (["no-such-command"], 2, "stderr", "No such command"),
        (["lock", "--no-such-option"], 2, "stderr", "No such option"),
    ],
)
def test_the_typer_clis_exit_codes_and_words_come_through(
    argv: list[str], code: int, stream: str, text: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TORCHENV_CACHE_DIR": str(tmp_path / "cache"), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True,
                          check=False, timeout=120, env=env)  # fmt: skip
    assert done.returncode == code
    assert text in getattr(done, stream)


def test_a_systemexit_with_a_message_is_left_to_the_interpreter(tmp_path: Path) -> None:
    """SystemExit('why') prints 'why' and exits 1: entry leaves it as it is."""
    program = (
        "import sys\n"
        "import torchenv.agent.cli.main as cli\n"
        "def stop(): raise SystemExit('why')\n"
        "cli.main = stop\n"
        "sys.argv = ['torchenv', 'probe']\n"
        "from torchenv.agent.cli.entry import main\n"
        "main()\n"
    )
    env = {**os.environ, "TORCHENV_NO_FASTPATH": "1"}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=False, timeout=60, env=env)  # fmt: skip
    assert (done.returncode, done.stderr) == (1, "why\n")
