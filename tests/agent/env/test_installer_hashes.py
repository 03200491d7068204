"""The installer checks the lock's hashes itself (uv and the pip fallback alike): a wheel the
store trusts by its note but whose bytes changed is refused by it, dropped and fetched again.
The changed wheel is a valid one (other timestamps, same size): only the hash tells."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from helpers.faults import HOST, real_lock

from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.env import checked, sync
from torchenv.agent.lock.pylock import read_lock_file

pytestmark = pytest.mark.e2e


def _restamp(wheel: Path) -> None:
    """The same wheel with other timestamps: valid, the same size, other bytes."""
    with zipfile.ZipFile(wheel) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    size = wheel.stat().st_size
    with zipfile.ZipFile(wheel, "w") as zf:
        for info, data in entries:
            info.date_time = (2001, 2, 3, 4, 5, 6)
            zf.writestr(info, data)
    assert wheel.stat().st_size == size


def _forge_note(wheels: Path, wheel: Path) -> None:
    """Make the note vouch for the wheel's present (tampered) stat."""
    doc = json.loads((wheels / checked.NOTE).read_text())
    key = wheel.relative_to(wheels).as_posix()
    st = wheel.stat()
    doc["wheels"][key][1:] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    (wheels / checked.NOTE).write_text(json.dumps(doc))


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_installer_refuses_a_wheel_the_note_wrongly_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installer: str
) -> None:
    if installer == "pip":
        monkeypatch.setenv("TORCHENV_UV", "")
    lock, cache = real_lock(tmp_path / "lock"), tmp_path / "cache"
    parsed, raw = read_lock_file(lock)

    def run(prefix: Path, reporter: RecordingReporter) -> sync.SyncResult:
        return sync.sync(
            parsed, raw, prefix, host_facts=HOST.target_facts(), cache_dir=cache,
            reporter=reporter, verifier=None,
        )  # fmt: skip

    assert run(tmp_path / "one", RecordingReporter()).installer == installer
    wheels = cache / "wheels"
    wheel = next(wheels.rglob("filelock-*.whl"))
    _restamp(wheel)
    _forge_note(wheels, wheel)
    reporter = RecordingReporter()
    result = run(tmp_path / "two", reporter)
    locked = parsed.package("filelock")
    assert locked is not None
    assert result.downloaded_bytes == locked.wheel.size
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == locked.wheel.sha256
    warnings = [e[1] for e in reporter.events if e[0] == "warning"]
    assert any("filelock" in w and "no longer match the lock" in w for w in warnings)
