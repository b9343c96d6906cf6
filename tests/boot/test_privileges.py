"""The privilege drop, for real: users from /etc/passwd, the kernel's own answers."""

from __future__ import annotations

import json
import pwd

import pytest

from tests.conftest import InitRunner

pytestmark = pytest.mark.pid1

# Run as the init's one-off child: who am I, which groups, can I get root back?
PROBE = """
import json, os
try:
    os.setuid(0)
    regained = True
except PermissionError:
    regained = False
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
    "groups": sorted(os.getgroups()), "regained_root": regained,
    "cap_eff": status["CapEff"].strip(), "home": os.environ.get("HOME"), "user": os.environ.get("USER"),
}))
"""


def probe(init: InitRunner, **env: str) -> dict:
    result = init.run("python3", "-c", PROBE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_child_runs_as_target_user_with_its_groups_only_and_cannot_regain_root(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    import grp

    seen = probe(init, MOLTBOT_USER=test_user.pw_name)
    extra = grp.getgrnam("mbextra").gr_gid
    assert (seen["uid"], seen["euid"]) == (test_user.pw_uid, test_user.pw_uid)
    assert (seen["gid"], seen["egid"]) == (test_user.pw_gid, test_user.pw_gid)
    assert seen["groups"] == sorted({test_user.pw_gid, extra})
    assert seen["regained_root"] is False
    assert int(seen["cap_eff"], 16) == 0
    assert (seen["home"], seen["user"]) == (test_user.pw_dir, test_user.pw_name)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", (0, 0)),
        ("0:0", (0, 0)),
        ("4321", (4321, 0)),  # a uid with no passwd entry keeps group 0, as gosu does
        ("4321:4322", (4321, 4322)),
        ("nobody", (65534, 65534)),
        ("nobody:root", (65534, 0)),
    ],
)
def test_user_spec_matrix_resolves_like_gosu(init: InitRunner, spec: str, expected: tuple[int, int]) -> None:
    seen = probe(init, MOLTBOT_USER=spec)
    assert (seen["uid"], seen["gid"]) == expected
    if expected[0] != 0:
        assert seen["regained_root"] is False


def test_name_with_group_sets_that_group_alone(init: InitRunner, test_user: pwd.struct_passwd) -> None:
    seen = probe(init, MOLTBOT_USER=f"{test_user.pw_name}:nogroup")
    assert seen["groups"] == [65534]


def test_puid_and_pgid_override_the_user(init: InitRunner) -> None:
    seen = probe(init, MOLTBOT_USER="nobody", PUID="2001", PGID="2002")
    assert (seen["uid"], seen["gid"], seen["groups"]) == (2001, 2002, [2002])


@pytest.mark.parametrize("spec", ["bogus", "0day", "0:bogus", "", "nobody:", "-1"])
def test_bad_user_spec_exits_78_with_one_json_line(init: InitRunner, spec: str) -> None:
    result = init.run("true", MOLTBOT_USER=spec)
    assert result.returncode == 78
    assert len(result.lines) == 1
    line = result.lines[0]
    assert (line["event"], line["setting"], line["value"]) == ("invalid_setting", "MOLTBOT_USER", spec)
    assert "accepted" in line


def test_dirs_are_created_owned_by_the_target_user(init: InitRunner, test_user: pwd.struct_passwd) -> None:
    import os

    result = init.run("true", MOLTBOT_USER=test_user.pw_name)
    assert result.returncode == 0
    for name in ("state", "workspace", "run"):
        info = os.stat(init.box / name)
        assert (info.st_uid, info.st_gid) == (test_user.pw_uid, test_user.pw_gid)


def test_started_non_root_skips_the_drop_and_warns_about_unwritable_dirs(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    import os

    for name in ("state", "workspace", "run"):
        (init.box / name).mkdir()
    os.chown(init.box / "run", test_user.pw_uid, test_user.pw_gid)
    command = ["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--init-groups"]
    import subprocess

    from tests.conftest import parse_lines

    completed = subprocess.run(
        [*command, *init.command("id", "-u", pid1=False)],
        env=init.env(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(test_user.pw_uid)
    lines = parse_lines(completed.stderr)
    unwritable = sorted(line["path"] for line in lines if line["event"] == "directory_not_writable")
    assert unwritable == sorted([str(init.box / "state"), str(init.box / "workspace")])
    report = next(line for line in lines if line["event"] == "startup_report")
    assert [phase["name"] for phase in report["phases"]] == ["config", "privileges", "credentials"]


def test_legacy_state_renamed_into_the_state_dir_ends_up_owned_by_the_user(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    import os

    legacy = init.box / "legacy"
    (legacy / "cron").mkdir(parents=True)
    (legacy / "cron" / "jobs.json").write_text("{}")
    (legacy / "clawdbot.json").write_text('{"gateway": {}}')
    result = init.run("true", MOLTBOT_USER=test_user.pw_name)
    assert result.returncode == 0, result.stderr
    report = result.events("startup_report")[0]
    phases = {phase["name"]: phase for phase in report["phases"]}
    assert phases["migration"]["figures"]["strategy"] == "rename"
    assert "ownership_migrated" in phases
    state = init.box / "state"
    for path in [state, *state.rglob("*")]:
        assert os.lstat(path).st_uid == test_user.pw_uid, path
    assert (state / "cron" / "jobs.json").read_text() == "{}"
