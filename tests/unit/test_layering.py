"""The house rules of the layout, checked: the generic init never names the gateway, phases do
not import each other, and the profile imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERIC = sorted((ROOT / "entrypoint").glob("*.py"))
PHASES = ("prepare", "ownership", "migrate", "privileges", "credentials")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                names.add(node.module.split(".")[0])
            elif node.level:
                names.update(alias.name for alias in node.names)
            elif node.module:
                names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


@pytest.mark.parametrize("path", [p for p in GENERIC if p.name != "__main__.py"], ids=lambda p: p.name)
def test_generic_init_never_names_the_gateway(path: Path) -> None:
    text = path.read_text().lower()
    for name in ("moltbot", "clawdbot", "openclaw"):
        assert name not in text, f"{path.name} mentions {name}"


@pytest.mark.parametrize("phase", PHASES)
def test_phases_do_not_import_each_other(phase: str) -> None:
    imports = imported_modules(ROOT / "entrypoint" / f"{phase}.py")
    assert not imports & (set(PHASES) - {phase}), imports


def test_profile_imports_nothing_of_ours() -> None:
    assert not imported_modules(ROOT / "moltbot" / "profile.py") & {"entrypoint", "moltbot"}
