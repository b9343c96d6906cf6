"""`MOLTBOT_CONFIG_SEED`, seen from outside: the boot seeds the gateway's config from the file (a
mounted ConfigMap) after the migration and the drop, as the target user, only when there is none."""

from __future__ import annotations

import pwd
import stat

import pytest

from tests.conftest import InitRunner

pytestmark = pytest.mark.pid1


def test_the_boot_seeds_the_gateway_s_config_once_owned_by_the_user(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    seed = init.box / "seed" / "openclaw.json"
    seed.parent.mkdir()
    seed.write_text('{"gateway": {"trustedProxies": ["10.0.0.0/8"]}}\n')
    seed.chmod(0o644)  # a ConfigMap's file
    env = {"MOLTBOT_USER": test_user.pw_name, "MOLTBOT_CONFIG_SEED": str(seed)}
    first = init.run("true", **env)
    config = init.box / "state" / "gateway" / "openclaw.json"
    assert first.returncode == 0, first.stderr
    assert config.read_text() == seed.read_text()
    info = config.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (test_user.pw_uid, 0o600)
    [report] = first.events("startup_report")
    assert [phase["name"] for phase in report["phases"]][-2:] == ["credentials", "config_seed"]

    seed.write_text('{"changed": true}\n')
    second = init.run("true", **env)
    assert (
        second.returncode == 0 and config.read_text() == '{"gateway": {"trustedProxies": ["10.0.0.0/8"]}}\n'
    )
    [report] = second.events("startup_report")
    assert report["phases"][-1]["figures"] == {"seeded": False, "kept": str(config)}
