"""The seven container scenarios of issue 6, with the real gateway from npm, through compose.

Each test starts its own stack (see conftest.py: internal network, no DNS, unique project and
volumes, torn down with `down -v`) and asserts what a user of `docker compose up -d` relies on.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_BOOT_PHASES
from tests.e2e.harness import (
    GATEWAY_DIR,
    NODE_GID,
    NODE_UID,
    STATE_DIR,
    TOKEN_FILE,
    WORKSPACE_DIR,
    Engine,
    ExitWatch,
    Stack,
    docker,
    manifest,
    throwaway,
    write_legacy_state,
)

pytestmark = pytest.mark.e2e

# What only a boot started as root does: a non-root start prepares and migrates what it can.
ROOT_ONLY_PHASES = {"ownership"}
SHUTDOWN_LINE = re.compile(r"\[shutdown\] completed cleanly in (\d+)ms")
# A valid openclaw config whose effect the running gateway prints at start ("agent model: ...").
MARKER_MODEL = "anthropic/claude-e2e-marker"
MARKER_CONFIG = json.dumps({"agents": {"defaults": {"model": {"primary": MARKER_MODEL}}}}) + "\n"


def startup_reports(stack: Stack) -> list[dict[str, Any]]:
    return stack.events("startup_report")


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [item for item in report["phases"] if item["name"] == name]
    assert found, f"no {name!r} phase in the startup report: {[p['name'] for p in report['phases']]}"
    return found[0]


def supervisorctl_pid(stack: Stack) -> int | None:
    status = stack.exec("supervisorctl", "status", "gateway")
    match = re.search(r"RUNNING\s+pid (\d+)", status.stdout)
    return int(match.group(1)) if match else None


def assert_healthz(stack: Stack) -> None:
    status, body = stack.http_get("/healthz")
    assert status == 200, (status, body)
    assert json.loads(body).get("ok") is True, body


# -- 1 -----------------------------------------------------------------------------------------------


def test_up_logs_startup_report_turns_healthy_and_serves_healthz(stack: Stack) -> None:
    asked = stack.up()
    healthy_at = stack.wait_healthy()

    reports = startup_reports(stack)
    assert len(reports) == 1, reports
    report = reports[0]
    assert report["mode"] == "supervise"
    assert report["user"] == {"name": "node", "uid": NODE_UID, "gid": NODE_GID}
    assert [item["name"] for item in report["phases"]] == list(ROOT_BOOT_PHASES)
    assert report["warnings"] == [], report["warnings"]
    assert phase(report, "privileges")["figures"]["dropped"] is True
    assert phase(report, "credentials")["figures"]["source"] == "generated"
    # The first line of `docker logs` is the report (the boot's own lines after it), and it comes
    # before the gateway says anything.
    logs = stack.logs()
    assert (logs[0].json() or {}).get("event") == "startup_report", logs[0]
    first_gateway_line = next(line for line in logs if line.json() is None)
    report_line = next(line for line in logs if (line.json() or {}).get("event") == "startup_report")
    assert report_line.at <= first_gateway_line.at

    assert_healthz(stack)
    ok = stack.exec("moltbot-init", "health")
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok

    # The generated token is kept (0600, node) and never written to the log.
    token = stack.exec("cat", TOKEN_FILE)
    assert token.returncode == 0 and len(token.stdout.strip()) >= 32, token
    mode = stack.exec("stat", "-c", "%a %u %g", TOKEN_FILE).stdout.split()
    assert mode == ["600", str(NODE_UID), str(NODE_GID)]
    assert all(token.stdout.strip() not in line.text for line in logs)
    print(f"up -d to healthy: {healthy_at - asked:.1f}s")


# -- 2 -----------------------------------------------------------------------------------------------


def test_exec_status_leaves_no_root_files_and_supervisorctl_restart_recovers(stack: Stack) -> None:
    stack.up()
    stack.wait_healthy()

    status = stack.exec("moltbot", "status", timeout=120)
    assert status.returncode == 0, status
    root_owned = stack.volume_files("(", "-uid", "0", "-o", "-gid", "0", ")")
    assert root_owned == [], f"root-owned files in the volumes after `moltbot status`: {root_owned}"

    listing = stack.exec("supervisorctl", "status")
    assert listing.returncode == 0, listing
    assert re.search(r"^gateway\s+RUNNING", listing.stdout, re.M), listing.stdout
    # The crash guard is a thread of supervisord's process, no program of its: alive, it keeps
    # the gateway's state, which `status` reads.
    guard = json.loads(stack.exec("moltbot-init", "status", "--json").stdout)["crash_guard"]
    assert guard is not None and guard["state"] == "running", guard
    before = supervisorctl_pid(stack)
    assert before is not None

    restart = stack.exec("supervisorctl", "restart", "gateway")
    # Only a probe begun after the restart returned saw the new gateway: one begun while the old
    # one was still stopping passes and says nothing of the new one.
    restarted_at = time.time()
    assert restart.returncode == 0, restart
    assert "gateway: stopped" in restart.stdout and "gateway: started" in restart.stdout, restart.stdout
    after = supervisorctl_pid(stack)
    assert after is not None and after != before

    stack.wait_healthy(since=restarted_at)
    assert_healthz(stack)
    assert supervisorctl_pid(stack) == after
    # An operator's restart is not a crash: no backoff, no refusal, the restart count is clean.
    assert stack.events("gateway_backoff") == []
    assert stack.events("crash_loop_refused") == []
    assert stack.exec("find", STATE_DIR, WORKSPACE_DIR, "-xdev", "-uid", "0").stdout == ""


# -- 3: the seed's EACCES ---------------------------------------------------------------------------


def test_root_filled_state_volume_is_repaired_and_gateway_starts(stack: Stack, engine: Engine) -> None:
    # What users had: a state dir created and filled by root (docker run as root, a host mkdir).
    throwaway(
        engine.image,
        "set -e; cd /v; mkdir -p cron canvas logs agents/main/agent;"
        ' printf \'{"version":1,"jobs":[]}\\n\' > cron/jobs.json;'
        " printf '<html></html>\\n' > canvas/index.html;"
        " printf 'old log\\n' > logs/gateway.log;"
        f" printf '%s' '{MARKER_CONFIG.strip()}' > openclaw.json;"
        " chown -R 0:0 /v; chmod 755 /v; chmod 600 openclaw.json",
        f"{stack.data_volume}:/v",
    )
    before = throwaway(
        engine.image, "cd /v && find . -printf '%U:%G %p\\n' | sort", f"{stack.data_volume}:/v"
    )
    assert "0:0 ./cron/jobs.json" in before

    stack.up()
    stack.wait_healthy()
    assert_healthz(stack)

    report = startup_reports(stack)[0]
    ownership = phase(report, "ownership")
    assert ownership["status"] == "ok", ownership
    assert ownership["figures"]["changed"] >= 9, ownership["figures"]
    wrong = stack.exec("find", STATE_DIR, "-xdev", "(", "!", "-uid", "1000", "-o", "!", "-gid", "1000", ")")
    assert wrong.returncode == 0 and wrong.stdout == "", f"not owned by 1000:1000:\n{wrong.stdout}"
    # Repaired, not replaced: the files are there with their content and mode.
    # (The gateway itself moves cron/jobs.json into its SQLite store and renames it *.migrated.)
    assert stack.exec("cat", f"{GATEWAY_DIR}/canvas/index.html").stdout == "<html></html>\n"
    assert stack.exec("cat", f"{GATEWAY_DIR}/logs/gateway.log").stdout == "old log\n"
    assert stack.exec("stat", "-c", "%a", f"{GATEWAY_DIR}/openclaw.json").stdout.strip() == "600"
    # The gateway runs on that config (it prints the configured model when it listens).
    assert any(f"agent model: {MARKER_MODEL}" in line for line in stack.gateway_output())
    assert not any("EACCES" in line for line in stack.gateway_output())


# -- 4: the seed's EBUSY ----------------------------------------------------------------------------


def test_bind_mounted_legacy_dir_is_migrated_once_and_left_unchanged(stack: Stack, host_dir: Path) -> None:
    legacy = host_dir / "clawdbot"
    legacy.mkdir(mode=0o755)
    # Legacy state the gateway accepts (it refuses, e.g., a device identity it cannot read).
    write_legacy_state(legacy, MARKER_CONFIG, photo_kib=16, cron=True)
    before = manifest(legacy)
    # The legacy dir is a mount point in the container: the gateway's own rename of it gave users
    # EBUSY; the init's rename into the data volume (another mount) is refused with EXDEV.
    stack.override({"volumes": [f"{legacy}:/home/node/.clawdbot"]})

    stack.up()
    stack.wait_healthy()
    assert_healthz(stack)

    migration = phase(startup_reports(stack)[0], "migration")
    figures = migration["figures"]
    assert migration["status"] == "ok", migration
    assert figures["outcome"] == "migrated", figures
    assert figures["source"] == "/home/node/.clawdbot"
    assert figures["strategy"] == "copy", figures  # the rename was refused: copied instead
    assert figures["rename_refused"] in ("EBUSY", "EXDEV"), figures
    assert "never modified" in figures["source_after"], figures
    assert figures["config_renamed"] == "clawdbot.json -> openclaw.json", figures

    # In the data volume, under the installed gateway's preferred name, byte for byte, owned by node.
    assert stack.exec("cat", f"{GATEWAY_DIR}/openclaw.json").stdout == MARKER_CONFIG
    assert stack.exec("test", "-e", f"{GATEWAY_DIR}/clawdbot.json").returncode == 1
    listing = stack.exec(
        "stat", "-c", "%a %u %g %N", f"{GATEWAY_DIR}/credentials/e2e.json", f"{GATEWAY_DIR}/latest-photo"
    ).stdout.splitlines()
    assert listing[0] == f"600 {NODE_UID} {NODE_GID} '{GATEWAY_DIR}/credentials/e2e.json'", listing
    assert listing[1].endswith("-> 'media/inbound/photo.bin'"), listing
    for name in ("media/inbound/photo.bin", "NOTES.md", "credentials/e2e.json"):
        copied = stack.exec("sha256sum", f"{GATEWAY_DIR}/{name}").stdout.split()[0]
        assert copied == before[name][6], name
    wrong = stack.exec("find", STATE_DIR, "-xdev", "(", "!", "-uid", "1000", "-o", "!", "-gid", "1000", ")")
    assert wrong.stdout == "", f"not owned by node after the migration:\n{wrong.stdout}"
    # The gateway runs on the migrated config.
    assert any(f"agent model: {MARKER_MODEL}" in line for line in stack.gateway_output())

    # The next start migrates nothing.
    restarted_at = time.time()
    stack.compose("restart")
    reports = stack.wait_event("startup_report", count=2)
    again = phase(reports[1], "migration")["figures"]
    assert again["outcome"] == "already-migrated", again
    assert "config_renamed" not in again
    assert len(stack.events("migration_commit")) <= 1
    stack.wait_healthy(since=restarted_at)
    assert stack.exec("cat", f"{GATEWAY_DIR}/openclaw.json").stdout == MARKER_CONFIG

    # The host's dir is exactly as it was: same entries, modes, owners, contents, times, inodes.
    stack.compose("stop")
    assert manifest(legacy) == before


# -- 5 -----------------------------------------------------------------------------------------------


def test_an_unparsable_config_is_held_after_one_exit_and_start_recovers_after_the_fix(
    stack: Stack, engine: Engine
) -> None:
    throwaway(
        engine.image,
        "printf '{ gateway: { mode: \"local\", ' > /v/openclaw.json && chown -R 1000:1000 /v && chmod 700 /v",
        f"{stack.data_volume}:/v",
    )
    stack.override(
        {
            "environment": {
                "MOLTBOT_BACKOFF_INITIAL": "0.5",
                "MOLTBOT_BACKOFF_MAX": "1",
                "MOLTBOT_CRASHLOOP_BURST": "3",
                "MOLTBOT_CRASHLOOP_WINDOW": "300",
            },
            # The image's own check, probed more often and with a short start period, so that
            # "unhealthy" shows within seconds rather than after the 90 s start period.
            "healthcheck": {
                "test": ["CMD", "/usr/local/bin/moltbot-init", "health"],
                "interval": "2s",
                "timeout": "5s",
                "retries": 2,
                "start_period": "1s",
            },
        }
    )
    stack.up()

    # EX_CONFIG (78): held at once, with the gateway's own words, never retried (upstream's systemd
    # unit has RestartPreventExitStatus=78).
    held = stack.wait_event("gateway_held", timeout=120)[0]
    assert held["level"] == "error" and held["exit_code"] == 78, held
    assert any("openclaw.json" in line for line in held["stderr_tail"]), held
    assert stack.events("gateway_backoff") == [] and stack.events("crash_loop_refused") == []

    stack.wait_for("the container to be unhealthy", lambda: stack.health().get("Status") == "unhealthy", 60)
    time.sleep(3)  # nothing restarts it behind our back
    container = stack.inspect()
    state = container["State"]
    assert state["Running"] is True and state["Restarting"] is False, state
    assert container["RestartCount"] == 0, container["RestartCount"]
    assert len(stack.events("gateway_starting")) == 1
    held = stack.exec("moltbot-init", "health")
    assert held.returncode == 1 and "held" in held.stdout, held
    assert supervisorctl_pid(stack) is None

    # Fix the config (as node, as the gateway would write it), then leave hold.
    fix = stack.exec(
        "sh", "-c", f"printf '%s' '{MARKER_CONFIG.strip()}' > {GATEWAY_DIR}/openclaw.json", user="1000:1000"
    )
    assert fix.returncode == 0, fix
    fixed_at = time.time()
    start = stack.exec("supervisorctl", "start", "gateway")
    assert start.returncode == 0, start
    assert "gateway: started" in start.stdout, start.stdout
    stack.wait_healthy(since=fixed_at)
    assert_healthz(stack)
    assert any(f"agent model: {MARKER_MODEL}" in line for line in stack.gateway_output())


# -- 6 -----------------------------------------------------------------------------------------------


# What the running gateway creates and removes by itself: SQLite's WAL and lock files (gone after a
# clean close), its locks and scratch dir (STATE/tmp), half-staged Control UI assets, temp files,
# and the read-only SQLite snapshots it takes under ~/.cache and retires itself
# (dist/sqlite-readonly-location-cleanup-*.mjs: `openclaw-sqlite-readonly-v2-XXXXXX`).
VOLATILE = re.compile(
    rf"(-wal|-shm|-journal|\.lock|\.tmp)$|/\.staging-|^{GATEWAY_DIR}/tmp/|/openclaw-sqlite-readonly-"
)


def _paths(stack: Stack) -> dict[str, str]:
    """Every entry of both volumes (but the gateway's volatile ones) and its type."""
    listing = stack.exec("find", STATE_DIR, WORKSPACE_DIR, "-xdev", "-printf", "%y %p\n").stdout
    entries = (line.split(" ", 1) for line in listing.splitlines())
    return {path: kind for kind, path in entries if not VOLATILE.search(path)}


def _digests(stack: Stack, *paths: str) -> str:
    completed = stack.exec(
        "sh", "-c", 'for f; do stat -c "%a %u %g %n" "$f"; sha256sum "$f"; done', "-", *paths
    )
    assert completed.returncode == 0, completed
    return completed.stdout


def test_stop_is_clean_and_quick_and_start_keeps_every_file_and_the_token(stack: Stack) -> None:
    stack.up()
    stack.wait_healthy()
    # Healthy comes with "listening"; "ready" (channels, sidecars, the Control UI's assets) follows.
    stack.wait_for(
        "the gateway to be ready", lambda: "[gateway] ready" in "\n".join(stack.gateway_output()), 60
    )
    sentinels = (f"{GATEWAY_DIR}/e2e-sentinel", f"{WORKSPACE_DIR}/notes/e2e-sentinel.md", TOKEN_FILE)
    plant = stack.exec(
        "sh",
        "-c",
        f"umask 077; printf 'state %s' $$ > {sentinels[0]};"
        f" mkdir -p {WORKSPACE_DIR}/notes; printf 'workspace %s' $$ > {sentinels[1]}",
        user="1000:1000",
    )
    assert plant.returncode == 0, plant
    digests = _digests(stack, *sentinels)
    paths = _paths(stack)
    token = stack.exec("cat", TOKEN_FILE).stdout

    # The gateway's own shutdown: from its "received SIGTERM" line to its process' exit, watched
    # from the host's /proc (or, on a remote engine, supervisord's "stopped: gateway" line).
    # On a fresh container it is ~3 s, not the ~0.1 s it reports: Node writes its compile cache
    # (~40 MB in /tmp) at its first exit.
    gateway_pid = supervisorctl_pid(stack)
    assert gateway_pid is not None
    on_host = stack.host_pid(gateway_pid)
    watch = ExitWatch(on_host) if on_host else None

    started, started_at = time.monotonic(), time.time()
    stopped = docker("stop", stack.container, timeout=60)
    took = time.monotonic() - started
    assert stopped.returncode == 0, stopped
    state = stack.state()
    assert state["Running"] is False
    assert state["ExitCode"] == 0, state
    assert state["OOMKilled"] is False
    exited = stack.events("supervisor_exited")
    assert exited and exited[-1]["exit_code"] == 0, exited
    assert stack.events("supervisor_kill") == []
    output = [line for line in stack.logs() if line.json() is None and line.at >= started_at - 1]
    assert any(SHUTDOWN_LINE.search(line.text) for line in output), "no clean shutdown reported"
    sigterm_at = next(line.at for line in output if "received SIGTERM" in line.text)
    if watch is not None:
        gateway_exit = watch.wait()
    else:
        gateway_exit = next(
            (
                at
                for at, text in stack.supervisord_log()
                if "stopped: gateway" in text and at >= started_at - 1
            ),
            None,
        )
    assert gateway_exit is not None, "when the gateway exited is unknown"
    own_s = gateway_exit - sigterm_at
    print(f"docker stop took {took:.2f}s; the gateway's own shutdown {own_s:.2f}s")
    assert took <= own_s + 2.0, (
        f"`docker stop` took {took:.2f}s, more than the gateway's own shutdown ({own_s:.2f}s) + 2 s"
    )

    started_at = time.time()
    docker("start", stack.container, check=True)
    reports = stack.wait_event("startup_report", count=2)
    stack.wait_healthy(since=started_at)
    second = reports[1]
    # Nothing to migrate at either boot: no source, nothing copied, no commit.
    again = phase(second, "migration")["figures"]
    assert again["outcome"] == "nothing-to-migrate", again
    assert again["source"] is None and again["entries"] == 0 and again["strategy"] is None, again
    assert stack.events("migration_commit") == []
    assert phase(second, "credentials")["figures"]["source"] == "file"
    assert phase(second, "ownership")["figures"]["changed"] == 0
    assert stack.exec("cat", TOKEN_FILE).stdout == token
    assert _digests(stack, *sentinels) == digests
    now = _paths(stack)
    lost = {path: kind for path, kind in paths.items() if now.get(path) != kind}
    assert lost == {}, f"gone or changed type after stop/start: {lost}"


# -- 7 -----------------------------------------------------------------------------------------------


def _run_once(engine: Engine, *args: str, entrypoint: str | None = None) -> Any:
    """`docker run --rm IMAGE ARGS` without a network (nothing to reach, nothing leaves)."""
    argv = ["run", "--rm", "--network", "none"]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    return docker(*argv, engine.image, *args, timeout=120)


def test_one_off_commands_pass_the_exit_code_through(engine: Engine) -> None:
    version = _run_once(engine, "moltbot", "--version")
    bare = _run_once(engine, "/app/moltbot.mjs", "--version", entrypoint="node")
    assert version.returncode == 0, version
    assert bare.returncode == 0 and bare.stdout.strip(), bare
    assert bare.stdout.strip() in version.stdout
    report = [json.loads(line) for line in version.stderr.splitlines() if '"startup_report"' in line]
    assert report and report[0]["mode"] == "run", version.stderr

    failing = _run_once(engine, "moltbot", "no-such-command")
    bare_failing = _run_once(engine, "/app/moltbot.mjs", "no-such-command", entrypoint="node")
    assert bare_failing.returncode != 0
    assert failing.returncode == bare_failing.returncode, (failing, bare_failing)

    assert _run_once(engine, "sh", "-c", "exit 42").returncode == 42
    assert _run_once(engine, "no-such-program").returncode == 127


def test_user_1000_skips_root_steps_and_warns_about_unwritable_volume(stack: Stack, engine: Engine) -> None:
    # A fresh state volume (node's, copied from the image) and a workspace volume owned by root
    # (not empty: Docker would give an empty volume the image dir's owner when it mounts it).
    throwaway(
        engine.image, "touch /v/README && chown -R 0:0 /v && chmod 755 /v", f"{stack.workspace_volume}:/v"
    )
    stack.override({"user": "1000:1000"})
    stack.up()

    report = stack.wait_event("startup_report")[0]
    names = [item["name"] for item in report["phases"]]
    assert names == ["config", "prepare", "migration", "privileges", "upgrade", "credentials"], names
    assert not ROOT_ONLY_PHASES & set(names)
    privileges = phase(report, "privileges")
    assert privileges["figures"]["started_as_root"] is False
    assert privileges["figures"]["dropped"] is False
    assert privileges["figures"]["unwritable"] == [WORKSPACE_DIR], privileges
    warnings = [line for line in stack.lines() if line.get("event") == "directory_not_writable"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["path"] == WORKSPACE_DIR
    assert "not writable" in warnings[0]["message"] and "chown" in warnings[0]["message"]
    assert report["warnings"] and report["warnings"][0]["event"] == "directory_not_writable"

    # Nothing in the state volume was touched by root: the init never had root to touch it with.
    stack.wait_healthy()
    assert_healthz(stack)
    assert stack.exec("find", STATE_DIR, "-xdev", "-uid", "0").stdout == ""
