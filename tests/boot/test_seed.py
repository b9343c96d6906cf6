"""Phase `config_seed`: the program's first config comes from the deployment's seed file only when
the state holds no config under any of its names; an existing one is never touched, and a seed
that cannot be read is a warning, never a crash.

Run by pytest as any user: the phase is called directly on scratch directories.
"""

from __future__ import annotations

import stat
from pathlib import Path

from entrypoint.boot import seed
from entrypoint.common.plans import SeedPlan

NAMES = ("openclaw.json", "moltbot.json", "clawdbot.json")
SEED = b'{"gateway": {"controlUi": {"allowedOrigins": ["https://moltbot.example.com"]}}}\n'


def plan(tmp_path: Path, source: Path) -> SeedPlan:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return SeedPlan(str(source), str(state), NAMES)


def test_a_state_without_config_gets_the_seed_private_to_its_user(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED)
    result = seed.run(plan(tmp_path, source))
    config = tmp_path / "state" / "openclaw.json"
    assert (result.status, result.figures["seeded"], result.figures["path"]) == ("ok", True, str(config))
    assert config.read_bytes() == SEED
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_an_existing_config_under_any_name_is_kept_as_it_is(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED)
    seeded = plan(tmp_path, source)
    older = tmp_path / "state" / "moltbot.json"  # an older generation's name: renamed by the migration
    older.write_text("{}")
    result = seed.run(seeded)
    assert (result.status, result.figures) == ("ok", {"seeded": False, "kept": str(older)})
    assert not (tmp_path / "state" / "openclaw.json").exists() and older.read_text() == "{}"


def test_a_second_boot_with_a_changed_seed_changes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED)
    seed.run(plan(tmp_path, source))
    source.write_bytes(b'{"changed": true}')
    assert seed.run(plan(tmp_path, source)).figures["seeded"] is False
    assert (tmp_path / "state" / "openclaw.json").read_bytes() == SEED


def test_a_dangling_link_at_the_config_s_path_is_neither_followed_nor_replaced(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED)
    seeded = plan(tmp_path, source)
    (tmp_path / "state" / "openclaw.json").symlink_to(tmp_path / "elsewhere.json")
    assert seed.run(seeded).figures["seeded"] is False
    assert not (tmp_path / "elsewhere.json").exists()


def test_a_missing_or_oversized_seed_is_one_warning_and_no_config(tmp_path: Path) -> None:
    large = tmp_path / "large.json"
    large.write_bytes(b" " * (1024 * 1024 + 1))
    for source in (tmp_path / "absent.json", large):
        result = seed.run(plan(tmp_path, source))
        assert result.status == "warned"
        assert [warning["event"] for warning in result.warnings] == ["config_seed_failed"]
        assert not (tmp_path / "state" / "openclaw.json").exists()
