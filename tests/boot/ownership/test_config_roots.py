"""Which roots the settings accept: system trees are refused before any walk (exit 78)."""

from __future__ import annotations

import os

import pytest

from entrypoint.common import settings
from entrypoint.common.exits import Exit

DEFAULTS = settings.Defaults(
    env_prefix="APP_",
    user="1000:1000",
    state_dir="/var/lib/app",
    workspace_dir="/home/app/work",
    run_dir="/run/app",
    legacy_dirs=(),
    program_port=8080,
)

FORBIDDEN = [
    "/",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/run",
    "/var",
    "/etc/ssl",
    "/usr/local/share",
    "/var/../etc",
    "/var/lib/../../usr",
    "//",
    "/etc/",
]


def load(**environ: str) -> settings.Settings:
    return settings.load({f"APP_{name}": value for name, value in environ.items()}, DEFAULTS, as_root=True)


@pytest.mark.parametrize("path", FORBIDDEN)
def test_system_tree_in_chown_paths_is_refused(path: str) -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(CHOWN_PATHS=f"/data:{path}")
    assert raised.value.setting == "APP_CHOWN_PATHS"


@pytest.mark.parametrize("name", ["STATE_DIR", "WORKSPACE_DIR", "RUN_DIR"])
def test_system_tree_as_a_default_root_is_refused(name: str) -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(**{name: "/etc"})
    assert raised.value.setting == f"APP_{name}"


@pytest.mark.parametrize("target", ["/etc", "/", "/usr/lib"])
def test_symlink_pointing_at_a_system_tree_is_refused(tmp_path, target: str) -> None:
    link = tmp_path / "innocent-looking"
    os.symlink(target, link)

    with pytest.raises(settings.ConfigError):
        load(CHOWN_PATHS=str(link))


def test_path_through_a_symlinked_directory_into_a_system_tree_is_refused(tmp_path) -> None:
    os.symlink("/usr", tmp_path / "u")

    with pytest.raises(settings.ConfigError):
        load(CHOWN_PATHS=str(tmp_path / "u" / "share"))


@pytest.mark.parametrize("path", ["/run/x", "/var/lib/x", "/srv/data", "/home/node/clawd", "/data"])
def test_data_directories_are_accepted_as_roots(path: str) -> None:
    settings = load(CHOWN_PATHS=path)

    assert path in settings.ownership_roots


def test_chown_paths_are_split_on_colons_normalised_and_deduplicated() -> None:
    settings = load(CHOWN_PATHS="/data/a::/data/b/:/data/./a:/var/lib/app")

    assert settings.chown_paths == ("/data/a", "/data/b", "/data/a", "/var/lib/app")
    assert settings.ownership_roots == ("/var/lib/app", "/home/app/work", "/run/app", "/data/a", "/data/b")


def test_relative_chown_path_is_refused() -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(CHOWN_PATHS="/data:relative/dir")
    assert "absolute" in raised.value.accepted


@pytest.mark.parametrize(("value", "mode"), [("auto", "auto"), ("off", "off"), ("OFF", "off")])
def test_fix_ownership_accepts_auto_and_off(value: str, mode: str) -> None:
    assert load(FIX_OWNERSHIP=value).ownership_mode == mode


def test_fix_ownership_defaults_to_auto() -> None:
    assert load().ownership_mode == "auto"


@pytest.mark.parametrize("value", ["yes", "true", "", "skip"])
def test_fix_ownership_rejects_anything_but_auto_and_off(value: str) -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(FIX_OWNERSHIP=value)
    assert raised.value.setting == "APP_FIX_OWNERSHIP"


def test_refusal_maps_to_exit_78() -> None:
    assert Exit.CONFIG == 78
