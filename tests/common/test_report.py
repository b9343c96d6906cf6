"""The startup report: statuses, warnings tagged with their phase, atomic file."""

from __future__ import annotations

import json
from pathlib import Path

from entrypoint.common import report, rundir


def test_recorder_status_follows_warnings_and_failure() -> None:
    recorder = report.PhaseRecorder("ownership")
    assert recorder.result().status == "ok"
    recorder.warn("root_read_only", "read-only", path="/data")
    assert recorder.result().status == "warned"
    recorder.failed = True
    assert recorder.result().status == "failed"


def test_report_lists_phases_in_order_and_tags_each_warning_with_its_phase(tmp_path: Path) -> None:
    quiet = report.PhaseResult("config", "ok", 1.0, {"mode": "supervise"})
    noisy = report.PhaseResult(
        "ownership", "warned", 2.5, {"changed": 3}, [report.warning("eperm", "no", n=1)]
    )
    startup = report.StartupReport(
        "1.0", "supervise", {"name": "node", "uid": 1000, "gid": 1000}, [quiet, noisy], 4.0
    )
    data = startup.to_dict()
    assert [phase["name"] for phase in data["phases"]] == ["config", "ownership"]
    assert data["phases"][1] == {
        "name": "ownership",
        "status": "warned",
        "duration_ms": 2.5,
        "figures": {"changed": 3},
        "warnings": [{"event": "eperm", "message": "no", "n": 1}],
    }
    assert data["warnings"] == [{"phase": "ownership", "event": "eperm", "message": "no", "n": 1}]
    path = report.write(startup, str(tmp_path))
    assert json.loads(Path(path).read_text()) == data
    assert report.read(str(tmp_path)) == data
    assert list(tmp_path.iterdir()) == [tmp_path / rundir.STARTUP_REPORT]


def test_unwritable_run_dir_gives_no_file_and_no_exception(tmp_path: Path) -> None:
    startup = report.StartupReport("1.0", "run", {}, [], 0.0)
    assert report.write(startup, str(tmp_path / "missing")) is None
    assert report.read(str(tmp_path / "missing")) is None
