"""Record and replay: a recorded host reproduces the identical HostReport anywhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import HOSTS

from torchenv.probes import LiveIO, RecordingIO, ReplayIO, probe_host
from torchenv.probes.report import HostReport

ALL_HOSTS = sorted(p.name for p in HOSTS.iterdir() if p.is_dir())


def test_live_record_then_replay_is_identical(tmp_path: Path) -> None:
    recorder = RecordingIO(LiveIO(), tmp_path / "rec")
    live = probe_host(recorder, disk_path=str(tmp_path / "env"))
    recorder.save()
    replayed = probe_host(ReplayIO(tmp_path / "rec"), disk_path=str(tmp_path / "env"))
    assert replayed == live
    assert replayed.to_json() == live.to_json()


def test_live_recording_holds_the_facts_the_probes_use(tmp_path: Path) -> None:
    recorder = RecordingIO(LiveIO(), tmp_path / "rec")
    probe_host(recorder, disk_path=str(tmp_path))
    recorder.save()
    facts = json.loads((tmp_path / "rec" / "facts.json").read_text())
    assert {"platform", "python", "memory", "disk", "cpu_count"} <= set(facts)
    assert set(facts["python"]) >= {"version", "interpreter_tag", "abi_tags", "platform_tags"}


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_re_recording_a_replay_reproduces_it(tmp_path: Path, name: str) -> None:
    """Recording what a replay answers gives a directory that replays to the same report."""
    first = RecordingIO(ReplayIO(HOSTS / name), tmp_path / "again")
    report = probe_host(first, disk_path="/")
    first.save()
    assert probe_host(ReplayIO(tmp_path / "again"), disk_path="/") == report


@pytest.mark.skipif(sys.platform != "linux", reason="the system probe reads os-release on Linux")
def test_recorded_read_errors_replay_as_reasons(tmp_path: Path) -> None:
    """A file unreadable while recording is unreadable, with the same reason, on replay."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_bytes(b"PRETTY_NAME=\xff\xfe\n")  # not UTF-8
    recorder = RecordingIO(LiveIO(root=tree, env={}), tmp_path / "rec")
    live = probe_host(recorder)
    recorder.save()
    manifest = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert "/etc/os-release" in manifest["errors"]
    replayed = probe_host(ReplayIO(tmp_path / "rec"))
    assert replayed == live
    assert any("/etc/os-release" in r for r in live.system.reasons)


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_report_json_round_trip(name: str) -> None:
    report = probe_host(ReplayIO(HOSTS / name), disk_path="/")
    text = json.dumps(report.to_json(), sort_keys=True)
    again = HostReport.from_json(json.loads(text))
    assert again == report
    assert again.fingerprint() == report.fingerprint()


def test_schema_version_is_checked() -> None:
    data = probe_host(ReplayIO(HOSTS / "mac-m3")).to_json()
    data["schema_version"] = 999
    with pytest.raises(ValueError, match="schema"):
        HostReport.from_json(data)


def test_an_empty_directory_replays_as_empty(tmp_path: Path) -> None:
    """A directory listed empty while recording is listed empty, not missing, on replay."""
    (tmp_path / "tree" / "dev" / "dri").mkdir(parents=True)
    recorder = RecordingIO(LiveIO(root=tmp_path / "tree", env={}), tmp_path / "rec")
    assert recorder.list_dir("/dev/dri") == []
    assert recorder.exists("/dev/dri")
    recorder.save()
    replay = ReplayIO(tmp_path / "rec")
    assert replay.list_dir("/dev/dri") == []
    assert replay.exists("/dev/dri")


@pytest.mark.parametrize(("name", "text"), [("manifest.json", "[]"), ("commands.json", "{}")])
def test_a_side_file_of_the_wrong_shape_is_refused(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match="not a recorded-host file"):
        ReplayIO(tmp_path)
