"""`backup`: the application's own archive of the live state, the generated secret beside it, the
newest N of its archives kept and nothing else touched; refused, with its exit code and one line,
when the image's release makes no archives, when the state is another release's, while a swap is
unfinished, and where it cannot write; the release's own words when its CLI fails."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from entrypoint.common import releases, swapjournal
from entrypoint.common.exits import Exit
from entrypoint.common.releases import History, Ran
from entrypoint.tools import backup
from tests.boot.upgrade.helpers import NEW, OLD, SECRET, backup_plan_for, gateway_state, layout, plan_for


def running(root: Path) -> None:
    """A state NEW runs on, with a generated secret."""
    state, _, _ = layout(root)
    gateway_state(state, NEW.version)
    (root / "volume" / ".moltbot-init" / SECRET).write_text("s3cret\n")
    releases.write(str(root / "volume" / ".moltbot-init"), History([Ran(NEW, 1.0)]))


def test_each_backup_is_the_release_s_verified_archive_of_the_live_state_and_the_newest_n_are_kept(
    tmp_path: Path,
) -> None:
    running(tmp_path)
    log = tmp_path / "cli.log"
    plan = backup_plan_for(tmp_path, log=log)
    mine = tmp_path / "backups" / "notes-openclaw-backup.tar.gz.txt"  # not an archive of its
    mine.write_text("the operator's own file")
    made = []
    for _ in range(4):
        assert backup.main(plan, plan_for(tmp_path), ["--keep", "2"]) == Exit.OK
        made.append(backup.archives(plan.directory, plan.archive_suffix)[0].name)
        time.sleep(0.01)  # each its own modification time
    kept = sorted(os.listdir(tmp_path / "backups"))
    newest = sorted(made[-2:])
    assert kept == sorted([*newest, *(f"{name}.{SECRET}" for name in newest), mine.name])
    for name in newest:
        secret = tmp_path / "backups" / f"{name}.{SECRET}"
        assert secret.read_text() == "s3cret\n" and secret.stat().st_mode & 0o777 == 0o600
    # The release's CLI was pointed at the live state: that is what it archives.
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {call["state_dir"] for call in calls} == {str(tmp_path / "volume" / "gateway")}


def test_a_secret_from_the_environment_leaves_none_beside_the_archive(tmp_path: Path) -> None:
    running(tmp_path)
    (tmp_path / "volume" / ".moltbot-init" / SECRET).unlink()
    plan = backup_plan_for(tmp_path)
    assert backup.main(plan, plan_for(tmp_path), []) == Exit.OK
    assert [name for name in os.listdir(plan.directory) if name.endswith(SECRET)] == []


REFUSALS = {
    "a-release-without-archives": (Exit.UNAVAILABLE, "backup_refused", "makes no archives"),
    "another-release-s-state": (Exit.UNAVAILABLE, "backup_refused", "the state is openclaw@2026.1.29's"),
    "an-unfinished-swap": (Exit.FAILED, "backup_refused", "is unfinished"),
    "no-such-directory": (Exit.CANT_CREATE, "backup_refused", "it does not exist"),
    "the-release-fails": (Exit.FAILED, "backup_failed", "refused by the stand-in"),
    "a-bad-option": (Exit.USAGE, "backup_usage", "usage: backup"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_backup_is_refused_with_its_code_and_one_line_and_makes_nothing(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    running(tmp_path)
    refuse = "create" if case == "the-release-fails" else ""
    plan = backup_plan_for(tmp_path, refuse=refuse, supported=case != "a-release-without-archives")
    args = {"no-such-directory": ["--output", str(tmp_path / "nowhere")], "a-bad-option": ["--keep", "0"]}
    if case == "another-release-s-state":
        releases.write(str(tmp_path / "volume" / ".moltbot-init"), History([Ran(OLD, 1.0)]))
    if case == "an-unfinished-swap":
        (tmp_path / "volume" / ".moltbot-init" / swapjournal.FILE).write_text("{}")
    with caplog.at_level(logging.INFO):
        code = backup.main(plan, plan_for(tmp_path), args.get(case, []))
    expected_code, event, said = REFUSALS[case]
    [record] = [record for record in caplog.records if getattr(record, "event", None)]
    assert (code, getattr(record, "event", None), record.levelname) == (expected_code, event, "ERROR")
    assert said in record.getMessage() and "\n" not in record.getMessage(), record.getMessage()
    assert os.listdir(plan.directory) == []


@pytest.mark.parametrize(
    ("said", "seconds"), [("3600", 3600.0), ("30m", 1800.0), ("6h", 21600.0), ("1d", 86400.0)]
)
def test_every_takes_seconds_or_minutes_hours_days(tmp_path: Path, said: str, seconds: float) -> None:
    assert backup.options(backup_plan_for(tmp_path), ["--every", said]).every == seconds


@pytest.mark.parametrize("args", [["--every", "0"], ["--every", "soon"], ["--keep"], ["--nope", "1"]])
def test_anything_else_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(backup.Refused) as refused:
        backup.options(backup_plan_for(tmp_path), args)
    assert refused.value.code == Exit.USAGE
