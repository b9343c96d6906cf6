"""The metrics as `common/metrics` renders them from a run dir's files and /proc: every fact where
the init keeps it, values as the files say, label values from fixed sets, and promtool's approval."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.common import guardstate, metrics, procfs, rundir
from entrypoint.common import report as reporting
from entrypoint.common.guardstate import HoldCause, Snapshot, State
from entrypoint.common.report import PhaseResult, StartupReport
from tests import promtool

NOW = 1_800_000_000.0


def parsed(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            selector, value = line.rsplit(" ", 1)
            samples[selector] = float(value)
    return samples


def boot_report(run_dir: Path) -> None:
    phases = [
        PhaseResult("config", "ok", 20.0),
        PhaseResult("ownership", "ok", 6.5, {"seen": 40, "changed": 7}),
        PhaseResult("migration", "ok", 1500.0, {"outcome": "migrated", "entries": 12, "bytes": 4096}),
        PhaseResult("ownership_migrated", "ok", 3.0, {"seen": 12, "changed": 3}),
        PhaseResult("upgrade", "ok", 2500.0, {"checkpoint_bytes": 8192, "checkpoint_seconds": 1.25}),
        PhaseResult("credentials", "ok", 0.0, {"source": "generated", "path": "/state/token"}),
    ]
    reporting.write(StartupReport("1.2.3", "supervise", {"name": "node"}, phases, 4100.0), str(run_dir))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run dir as a live init leaves it: its pid (this process stands in for PID 1 and for
    supervisord's process), its report and PID 1's count of reaped orphans."""
    (tmp_path / rundir.INSTANCE_LOCK).write_text(f"{os.getpid()}\n")
    (tmp_path / rundir.SUPERVISOR_PID).write_text(f"{os.getpid()}\n")
    rundir.write_number(str(tmp_path), rundir.ZOMBIES_REAPED, 5)
    boot_report(tmp_path)
    return tmp_path


@pytest.fixture
def gateway() -> Iterator[int]:
    """A running process with a child of its own, standing in for the gateway's tree."""
    process = subprocess.Popen(["sh", "-c", "sleep 60 & exec sleep 61"], start_new_session=True)
    while len(procfs.tree(process.pid)) < 2:
        time.sleep(0.01)
    yield process.pid
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_held_gateway_and_the_boot_are_rendered_from_the_run_dir_and_promtool_accepts_them(
    run_dir: Path,
) -> None:
    held = Snapshot(
        "gateway",
        State.HELD,
        NOW - 60,
        restarts=4,
        requested_restarts=2,
        operator_restarts=1,
        oom_kills=1,
        last_exit_code=-1,
        backoff_s=7.5,
        held_reason="crash loop: 5 exits within 300s; OPENAI_API_KEY=sk-not-for-metrics",
        held_cause=HoldCause.CRASH_LOOP,
    )
    guardstate.write(str(run_dir), held, NOW)
    text = metrics.render(str(run_dir), "app", NOW)
    promtool.check(text)
    samples = parsed(text)
    assert samples["app_gateway_up"] == 0
    assert samples['app_gateway_state{state="held"}'] == 1
    assert sum(value for key, value in samples.items() if key.startswith("app_gateway_state{")) == 1
    assert samples['app_gateway_held{reason="crash_loop"}'] == 1
    assert {key for key in samples if key.startswith("app_gateway_held{")} == {
        f'app_gateway_held{{reason="{cause}"}}' for cause in HoldCause
    }
    assert sum(value for key, value in samples.items() if key.startswith("app_gateway_held{")) == 1
    assert [
        samples[f'app_gateway_restarts_total{{cause="{cause}"}}'] for cause in guardstate.RestartCause
    ] == [
        4,
        2,
        1,
    ]
    assert samples["app_gateway_oom_kills_total"] == 1
    assert samples["app_gateway_last_exit_code"] == -1
    assert samples["app_gateway_backoff_seconds_total"] == 7.5
    assert (
        "app_gateway_start_time_seconds" not in samples and "app_gateway_resident_memory_bytes" not in samples
    )
    assert samples['app_init_info{version="1.2.3"}'] == 1
    assert samples["app_init_boot_duration_seconds"] == 4.1
    assert samples['app_init_boot_phase_duration_seconds{phase="migration"}'] == 1.5
    assert samples['app_init_boot_phase_duration_seconds{phase="credentials"}'] == 0
    assert samples["app_init_reowned_entries"] == 7 + 3
    assert (samples["app_init_migration_entries"], samples["app_init_migration_bytes"]) == (12, 4096)
    assert samples["app_init_migration_duration_seconds"] == 1.5
    assert samples["app_init_checkpoint_bytes"] == 8192
    assert samples["app_init_checkpoint_duration_seconds"] == 1.25
    assert samples["app_init_zombies_reaped_total"] == 5
    assert samples["app_init_start_time_seconds"] > NOW - 10**8
    assert samples['app_init_resident_memory_bytes{process="pid1"}'] > 1 << 20
    assert samples['app_init_resident_memory_bytes{process="supervisord"}'] > 1 << 20
    # The words of a hold (which may quote the gateway's output) and the boot's paths are no label.
    assert "sk-not-for-metrics" not in text and "/state/token" not in text


def test_a_running_gateway_is_up_with_its_start_time_and_the_memory_of_its_whole_tree(
    run_dir: Path, gateway: int
) -> None:
    running = Snapshot("gateway", State.RUNNING, NOW - 5, pid=gateway, running_since=NOW - 5)
    guardstate.write(str(run_dir), running, NOW)
    samples = parsed(metrics.render(str(run_dir), "app", NOW))
    assert samples["app_gateway_up"] == 1
    assert samples["app_gateway_start_time_seconds"] == NOW - 5
    alone = procfs.rss_pages(procfs.stat_fields(gateway)) * os.sysconf("SC_PAGE_SIZE")
    assert samples["app_gateway_resident_memory_bytes"] > alone  # its child counts too
    assert sum(value for key, value in samples.items() if key.startswith("app_gateway_held{")) == 0
    assert "app_gateway_last_exit_code" not in samples  # no exit yet


def test_time_in_backoff_includes_the_stay_in_progress(run_dir: Path) -> None:
    waiting = Snapshot("gateway", State.BACKOFF, NOW - 2, backoff_s=1.0, restart_at=NOW + 2)
    guardstate.write(str(run_dir), waiting, NOW)
    assert parsed(metrics.render(str(run_dir), "app", NOW))["app_gateway_backoff_seconds_total"] == 3.0


def test_before_the_crash_guard_has_written_the_gateway_is_only_said_to_be_down(tmp_path: Path) -> None:
    text = metrics.render(str(tmp_path), "app", NOW)
    promtool.check(text)
    assert [key for key in parsed(text) if key.startswith("app_gateway")] == ["app_gateway_up"]
    assert parsed(text)["app_gateway_up"] == 0


def test_the_textfile_is_replaced_whole_and_readable_by_a_collector(run_dir: Path) -> None:
    text = metrics.render(str(run_dir), "app", NOW)
    path = metrics.write_textfile(str(run_dir), text)
    assert path == str(run_dir / "metrics.prom")
    assert Path(path).read_text() == text
    assert Path(path).stat().st_mode & 0o777 == 0o644
    assert not list(run_dir.glob("*.tmp"))


def test_a_run_dir_that_cannot_be_written_is_no_failure(tmp_path: Path) -> None:
    assert metrics.write_textfile(str(tmp_path / "missing"), "app_gateway_up 0\n") is None
