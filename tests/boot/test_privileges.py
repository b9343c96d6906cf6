"""The privilege drop, for real: users from /etc/passwd, the kernel's own answers."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import InitRunner, parse_lines

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
    result = init.run("true", MOLTBOT_USER=test_user.pw_name)
    assert result.returncode == 0
    for name in ("state", "workspace", "run"):
        info = os.stat(init.box / name)
        assert (info.st_uid, info.st_gid) == (test_user.pw_uid, test_user.pw_gid)


def test_started_non_root_skips_the_drop_and_warns_about_unwritable_dirs(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    for name in ("state", "workspace", "run"):
        (init.box / name).mkdir()
    os.chown(init.box / "run", test_user.pw_uid, test_user.pw_gid)
    command = ["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--init-groups"]
    completed = init.tool("id", "-u", under=command)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(test_user.pw_uid)
    lines = parse_lines(completed.stderr)
    unwritable = sorted(line["path"] for line in lines if line["event"] == "directory_not_writable")
    assert unwritable == sorted([str(init.box / "state"), str(init.box / "workspace")])
    report = next(line for line in lines if line["event"] == "startup_report")
    names = [phase["name"] for phase in report["phases"]]
    assert names == ["config", "prepare", "migration", "privileges", "upgrade", "credentials"]


def test_legacy_state_renamed_into_the_state_dir_ends_up_owned_by_the_user(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
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
    assert (state / "gateway" / "cron" / "jobs.json").read_text() == "{}"


PID_NAMESPACE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


def _run_root_without_capabilities(
    init: InitRunner, user: str, *caps_to_drop: str, command: tuple[str, ...] = ("true",)
) -> subprocess.CompletedProcess[str]:
    """The init as PID 1, root, with `caps_to_drop` gone (setpriv runs inside the new namespace:
    unshare itself needs CAP_SYS_ADMIN)."""
    drop = ",".join(f"-{cap}" for cap in caps_to_drop)
    setpriv = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--"]
    return init.tool(*command, under=[*PID_NAMESPACE, *setpriv], MOLTBOT_USER=user)


# A one-off command, and the gateway supervised: supervisord's process is then forked at the start
# of the boot, and cannot become the user either; it ends without a word.
COMMANDS = pytest.mark.parametrize("command", [("true",), ()], ids=["one-off", "supervised"])


@COMMANDS
def test_without_setuid_and_setgid_the_boot_refuses_with_one_line_naming_them_before_touching_volumes(
    init: InitRunner, test_user: pwd.struct_passwd, command: tuple[str, ...]
) -> None:
    """`--cap-drop ALL`: not a bare EPERM after the repairs, but exit 78 and what to do."""
    completed = _run_root_without_capabilities(init, test_user.pw_name, "all", command=command)
    assert completed.returncode == 78, completed.stderr
    [line] = parse_lines(completed.stderr)
    assert line["event"] == "capabilities_missing" and line["level"] == "error"
    assert line["missing"] == ["CAP_SETGID", "CAP_SETUID"]
    assert f"--user {test_user.pw_uid}:{test_user.pw_gid}" in line["message"]
    assert "--cap-add SETUID" in line["message"] and "--cap-add CHOWN" in line["message"]
    assert not (init.box / "state").exists()  # refused before the prepare phase


def test_missing_repair_capabilities_alone_do_not_stop_the_boot(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    completed = _run_root_without_capabilities(init, test_user.pw_name, "chown", "fowner")
    assert completed.returncode == 0, completed.stderr
    assert not [line for line in parse_lines(completed.stderr) if line["event"] == "capabilities_missing"]


@COMMANDS
def test_an_interpreter_the_target_user_cannot_read_is_refused_with_one_line_naming_it(
    init: InitRunner, test_user: pwd.struct_passwd, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """The init installed under /root (mode 0700): refused as root, before the drop, never a crash
    with "unknown encoding" after it."""
    private = tmp_path / "private"
    shutil.copytree(init.sources / "entrypoint", private / "entrypoint")
    shutil.copytree(init.sources / "moltbot", private / "moltbot")
    private.chmod(0o700)
    tmp_path.chmod(0o700)
    completed = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            init.python,
            "-m",
            "entrypoint",
            *command,
        ],
        env=init.env(MOLTBOT_USER=test_user.pw_name, PYTHONPATH=str(private)),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 78, completed.stderr
    [line] = parse_lines(completed.stderr)
    assert line["event"] == "runtime_unreadable"
    assert line["paths"] and line["paths"][0].startswith(str(tmp_path))
    assert "not readable by" in line["message"] and "/opt" in line["message"]
