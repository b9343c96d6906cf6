"""`status`: the summary an operator reads, as text and as JSON."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from entrypoint.common import report
from entrypoint.tools import status
from tests.fakes import fake_supervisor, gateway
from tests.supervised import free_port


def write_report(run_dir: Path) -> None:
    startup = report.StartupReport(
        version="9.9.9",
        mode="supervise",
        user={"name": "node", "uid": 1000, "gid": 1000},
        phases=[
            report.PhaseResult("config", "ok", 1.0),
            report.PhaseResult("ownership", "warned", 5.0, warnings=[report.warning("x", "chown failed")]),
        ],
        duration_ms=42.0,
    )
    assert report.write(startup, str(run_dir))


def settings(run_dir: Path, port: int) -> SimpleNamespace:
    return SimpleNamespace(run_dir=str(run_dir), program_port=port)


def status_of(run_dir: Path, port: int, out: io.StringIO, as_json: bool) -> int:
    """`status` on the run dir, its records beside it, printed into `out`: its exit code."""
    return status.main(settings(run_dir, port), "gateway", str(run_dir / "records"), as_json=as_json, out=out)


def test_status_reports_the_program_tree_and_the_guard(tmp_path: Path) -> None:
    write_report(tmp_path)
    (tmp_path / "crashguard.json").write_text(
        json.dumps(
            {
                "program": "gateway",
                "state": "running",
                "since_at": "2026-01-01T00:00:00.000Z",
                "restarts": 2,
                "exits": [{"time": "2026-01-01T00:00:00.000Z", "epoch": 1767225600.0, "exit_code": 1}],
                "burst": 5,
                "window_s": 300,
                "action": "hold",
            }
        )
    )
    # A process tree to measure: a parent with one child.
    tree = subprocess.Popen(
        [sys.executable, "-c", "import subprocess,sys,time; subprocess.Popen(['sleep','30']); time.sleep(30)"]
    )
    try:
        time.sleep(0.3)
        with fake_supervisor(str(tmp_path)) as fake:
            fake.info = {"statename": "RUNNING", "pid": tree.pid, "start": 1000, "now": 4723}
            out = io.StringIO()
            assert status_of(tmp_path, free_port(), out, as_json=True) == 0
            data = json.loads(out.getvalue())
            text_out = io.StringIO()
            assert status_of(tmp_path, free_port(), text_out, as_json=False) == 0
    finally:
        subprocess.run(["pkill", "-P", str(tree.pid)], check=False)
        tree.kill()
        tree.wait()
    assert data["startup"]["version"] == "9.9.9"
    assert [phase["status"] for phase in data["startup"]["phases"]] == ["ok", "warned"]
    assert data["program"] == {
        "name": "gateway",
        "state": "RUNNING",
        "pid": tree.pid,
        "started_at": "1970-01-01T00:16:40.000Z",
        "uptime_s": 3723,
    }
    assert data["resources"]["processes"] == 2
    assert data["resources"]["rss_bytes"] > 1_000_000
    assert data["crash_guard"]["restarts"] == 2 and data["crash_guard"]["state"] == "running"
    assert data["health"]["ok"] is False and "closed" in data["health"]["reason"]
    text = text_out.getvalue()
    assert "init 9.9.9 (supervise mode), user node (1000:1000)" in text
    assert "gateway: RUNNING" in text and "up 1h02m03s" in text
    assert "crash guard: running, 2 restarts" in text and "1 of 5 exits within 300s" in text
    assert "resources: 2 processes" in text
    assert "warning (ownership): chown failed" in text


def test_status_measures_the_pid_supervisord_gives_when_the_guard_s_is_stale(tmp_path: Path) -> None:
    # The guard wrote a pid that is gone (the program restarted since); supervisord knows the new one.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "crashguard.json").write_text(
        json.dumps({"program": "gateway", "state": "running", "pid": gone.pid, "exits": []})
    )
    tree = subprocess.Popen(["sleep", "30"])
    try:
        with fake_supervisor(str(tmp_path)) as fake:
            fake.info = {"statename": "RUNNING", "pid": tree.pid, "start": 1000, "now": 1010}
            out = io.StringIO()
            assert status_of(tmp_path, free_port(), out, as_json=True) == 0
    finally:
        tree.kill()
        tree.wait()
    data = json.loads(out.getvalue())
    assert data["program"]["pid"] == tree.pid
    assert data["resources"]["processes"] == 1 and data["resources"]["rss_bytes"] > 0


def test_status_of_a_held_program_says_how_to_leave_hold(tmp_path: Path) -> None:
    (tmp_path / "crashguard.json").write_text(
        json.dumps({"program": "gateway", "state": "held", "held_reason": "crash loop: 5 exits", "exits": []})
    )
    with fake_supervisor(str(tmp_path)) as fake:
        fake.info = {"statename": "STOPPED", "pid": 0, "start": 0, "now": 5, "exitstatus": 1}
        out = io.StringIO()
        assert status_of(tmp_path, free_port(), out, as_json=False) == 0
    text = out.getvalue()
    assert "held: crash loop: 5 exits" in text
    assert "supervisorctl start gateway" in text
    assert "startup report: not found" in text


def test_status_without_supervisord_exits_1(tmp_path: Path) -> None:
    out = io.StringIO()
    assert status_of(tmp_path, free_port(), out, as_json=True) == 1
    data = json.loads(out.getvalue())
    assert data["supervisord"]["answering"] is False and data["program"] is None


def test_status_shows_the_three_probes(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)), gateway("probes", "--starting", "30") as running:
        out = io.StringIO()
        assert status_of(tmp_path, running.port, out, as_json=True) == 0
        text_out = io.StringIO()
        assert status_of(tmp_path, running.port, text_out, as_json=False) == 0
    where = f"on port {running.port})"
    assert json.loads(out.getvalue())["health"] == {
        "ok": True,
        "reason": f"gateway live (/healthz {where}",
        "startup": {"ok": False, "reason": f"gateway starting: startup-sidecars (/startupz {where}"},
        "ready": {"ok": False, "reason": f"gateway not ready: failing startup-sidecars (/readyz {where}"},
    }
    assert text_out.getvalue().endswith(
        f"health: ok: gateway live (/healthz {where}\n"
        f"  startup: failing: gateway starting: startup-sidecars (/startupz {where}\n"
        f"  ready: failing: gateway not ready: failing startup-sidecars (/readyz {where}\n"
    )
