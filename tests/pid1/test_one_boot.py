"""One boot per container: the init run again beside a live one (`docker exec`, a probe, a typo)
never boots a second time and never writes the live one's run dir."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from entrypoint.__main__ import SUBCOMMANDS
from entrypoint.common import rundir
from tests.conftest import parse_lines
from tests.supervised import Supervised, free_port, standin

pytestmark = pytest.mark.pid1


@pytest.mark.parametrize(
    ("args", "meant"),
    [(("statsu",), "status"), (("healht",), "health"), ((), None), (("gateway",), None), (("bash",), None)],
    ids=["typo-status", "typo-health", "no-arguments", "gateway", "a-command"],
)
def test_beside_a_live_init_a_boot_is_refused_with_the_tools_and_the_run_dir_untouched(
    supervised: Callable[..., Supervised], args: tuple[str, ...], meant: str | None
) -> None:
    port = free_port()
    running = supervised(standin("healthy", "--port", port), MOLTBOT_GATEWAY_PORT=str(port))
    try:
        running.wait_for("gateway_running")
        before = {path.name: path.read_bytes() for path in running.run_dir.iterdir() if path.is_file()}
        refused = running.init_command(*args)
        after = {path.name: path.read_bytes() for path in running.run_dir.iterdir() if path.is_file()}
        still = running.health_once_listening()
    finally:
        assert running.terminate() == 0
    assert refused.returncode == 64 and refused.stdout == ""
    [line] = parse_lines(refused.stderr)
    assert line["event"] == "init_already_running" and line["did_you_mean"] == meant
    assert set(line["tools"]) == {*SUBCOMMANDS, "moltbot"}
    if meant:
        assert f"did you mean `moltbot-init {meant}`?" in line["message"]
    # Nothing of the live instance's was written: its report, its lock, its supervisord config (the
    # files the live processes themselves keep writing aside, and their writers' temporary files).
    live = (rundir.GUARD_STATE, rundir.METRICS_TEXTFILE, rundir.ZOMBIES_REAPED, rundir.SUPERVISOR_LOG)
    temporary = rundir.TEMPORARY_SUFFIX

    def kept(files: dict[str, bytes]) -> dict[str, bytes]:
        return {name: data for name, data in files.items() if name.removesuffix(temporary) not in live}

    assert kept(after) == kept(before)
    assert still.returncode == 0 and len(running.events("startup_report")) == 1
