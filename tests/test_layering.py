"""The house rules of the layout, checked on the source tree.

The folders of `entrypoint/` are the programs that share the binary (`boot/` as PID 1 and root,
`pid1/` after the drop, `crashguard/` inside supervisord, `tools/` for operators) plus `common/`,
the contracts between them. Arrows point one way: `common/` imports nothing else of ours, `boot/`
never imports the later programs and its phases never import each other, `crashguard/` and
`tools/` see only `common/` (and the one supervisord client, `tools/rpc`), and only `wiring`
reads the application profile.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "entrypoint"
MODULES = sorted(PACKAGE.rglob("*.py"))
SOURCES = sorted([*MODULES, *(ROOT / "moltbot").rglob("*.py")])
TESTS_AND_TOOLS = [
    *(ROOT / "tests").rglob("*.py"),
    *(ROOT / "bench").iterdir(),
    *(ROOT / "scripts").rglob("*.py"),
]
PYTHON_FILES = sorted([*SOURCES, *TESTS_AND_TOOLS])
PHASES = ("prepare", "ownership", "migration", "privileges", "credentials")
MAX_LINES = 450


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, as an absolute dotted name (`from . import x` gives `pkg.x`)."""
    package = dotted(path) if path.name == "__init__.py" else dotted(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def ours(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".")[0] in ("entrypoint", "moltbot")}


def in_folder(folder: str) -> list[Path]:
    return [path for path in MODULES if path.relative_to(PACKAGE).parts[0] == folder]


def names_of(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def existing_modules(names: set[str]) -> set[str]:
    """Only the names that are modules or packages of ours (not `from x import SomeClass`)."""
    known = {dotted(path) for path in MODULES} | {dotted(path) for path in SOURCES}
    return {name for name in names if name in known}


@pytest.mark.parametrize("path", in_folder("common"), ids=names_of(in_folder("common")))
def test_common_imports_nothing_else_of_ours(path: Path) -> None:
    outside = {name for name in ours(imported(path)) if not name.startswith("entrypoint.common")}
    assert not outside, outside


@pytest.mark.parametrize("path", in_folder("boot"), ids=names_of(in_folder("boot")))
def test_boot_never_imports_the_programs_that_run_after_it(path: Path) -> None:
    later = {
        name
        for name in ours(imported(path))
        if name.startswith(("entrypoint.pid1", "entrypoint.crashguard", "entrypoint.tools"))
    }
    assert not later, later


@pytest.mark.parametrize("phase", PHASES)
def test_boot_phases_never_import_each_other(phase: str) -> None:
    own = f"entrypoint.boot.{phase}"
    others = tuple(f"entrypoint.boot.{other}" for other in PHASES if other != phase)
    files = [path for path in in_folder("boot") if dotted(path) == own or dotted(path).startswith(own + ".")]
    assert files, f"no module for the phase {phase}"
    for path in files:
        crossing = {name for name in ours(imported(path)) if name.startswith(others)}
        assert not crossing, f"{path.relative_to(ROOT)} imports {crossing}"


@pytest.mark.parametrize("folder", ["crashguard", "tools"])
def test_crash_guard_and_tools_see_only_the_contracts(folder: str) -> None:
    for path in in_folder(folder):
        allowed = ("entrypoint.common", f"entrypoint.{folder}", "entrypoint.tools.rpc")
        outside = {name for name in existing_modules(ours(imported(path))) if not name.startswith(allowed)}
        assert not outside, f"{path.relative_to(ROOT)} imports {outside}"


@pytest.mark.parametrize("path", SOURCES, ids=names_of(SOURCES))
def test_only_wiring_reads_the_profile(path: Path) -> None:
    if path.relative_to(ROOT).parts[0] == "moltbot" or path == PACKAGE / "wiring.py":
        return
    assert not {name for name in imported(path) if name.split(".")[0] == "moltbot"}


@pytest.mark.parametrize("path", MODULES, ids=names_of(MODULES))
def test_the_generic_init_never_names_the_gateway(path: Path) -> None:
    if path == PACKAGE / "wiring.py":
        return
    text = path.read_text().lower()
    for name in ("moltbot", "clawdbot", "openclaw"):
        assert name not in text, f"{path.relative_to(ROOT)} mentions {name}"


def test_the_profile_imports_nothing_of_ours() -> None:
    assert not ours(imported(ROOT / "moltbot" / "profile.py"))


@pytest.mark.parametrize("path", SOURCES, ids=names_of(SOURCES))
def test_every_module_is_readable_in_one_sitting(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("path", SOURCES, ids=names_of(SOURCES))
def test_every_module_opens_with_a_docstring(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no docstring"


def test_one_module_replaces_files() -> None:
    """`os.replace` (rename over a file) lives in the one atomic writer, which fsyncs."""
    users = [path.relative_to(ROOT) for path in SOURCES if "os.replace(" in path.read_text()]
    assert users == [Path("entrypoint/common/rundir.py")], users


def test_no_type_ignore_anywhere() -> None:
    marker = "type: " + "ignore"
    found = [path.relative_to(ROOT) for path in PYTHON_FILES if path.is_file() and marker in path.read_text()]
    assert not found, found
