"""The house rules of the layout, checked on the source tree.

The folders of `entrypoint/` are the programs that share the binary (`boot/` as PID 1 and root,
`pid1/` after the drop, `supervisord/` for supervisord's process, `crashguard/` inside it, `tools/`
for operators) plus `common/`, the contracts between them. Arrows point one way: `common/` imports
nothing else of ours; `boot/`, `pid1/`, `crashguard/` and `tools/` see only `common/` (and the boot's
phases never each other); `supervisord/` sees `common/` and the crash guard it hosts; the modules at
the top (`__main__`, `commands`, `start`, `wiring`) tie them together, and only `wiring` reads the
application profile. Each package says once who runs it, as whom and after what; its modules say it
again only where they differ.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from entrypoint.common.exits import Exit

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
MAX_LINES = 400
# What each program's folder may import of ours, besides itself.
SEES = {
    "common": (),
    "boot": ("entrypoint.common",),
    "pid1": ("entrypoint.common",),
    "supervisord": ("entrypoint.common", "entrypoint.crashguard"),
    "crashguard": ("entrypoint.common",),
    "tools": ("entrypoint.common",),
}
# A package says who runs it (or, for the contracts, who uses it), as whom and after what.
WHO = re.compile(r"^Who (runs|uses) it: ", re.MULTILINE)
WHEN = re.compile(r"\b(after|before|once|first|from|during|while|until|right)\b")


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


PROGRAM_MODULES = [path for path in MODULES if path.relative_to(PACKAGE).parts[0] in SEES]


@pytest.mark.parametrize("path", PROGRAM_MODULES, ids=names_of(PROGRAM_MODULES))
def test_each_program_sees_only_what_it_may(path: Path) -> None:
    folder = path.relative_to(PACKAGE).parts[0]
    allowed = (f"entrypoint.{folder}", *SEES[folder])
    outside = {name for name in existing_modules(ours(imported(path))) if not name.startswith(allowed)}
    outside |= {name for name in ours(imported(path)) if name.split(".")[0] == "moltbot"}
    assert not outside, f"{path.relative_to(ROOT)} imports {outside}"


def boot_phases() -> list[str]:
    """The phases, as the one module that knows the boot's order imports them."""
    pipeline = PACKAGE / "boot" / "pipeline.py"
    return sorted(
        name.rpartition(".")[2]
        for name in existing_modules(ours(imported(pipeline)))
        if name.startswith("entrypoint.boot.")
    )


@pytest.mark.parametrize("phase", boot_phases())
def test_boot_phases_never_import_each_other(phase: str) -> None:
    own = f"entrypoint.boot.{phase}"
    others = tuple(f"entrypoint.boot.{other}" for other in boot_phases() if other != phase)
    files = [path for path in in_folder("boot") if dotted(path) == own or dotted(path).startswith(own + ".")]
    assert files, f"no module for the phase {phase}"
    for path in files:
        crossing = {name for name in ours(imported(path)) if name.startswith(others)}
        assert not crossing, f"{path.relative_to(ROOT)} imports {crossing}"


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


def docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


PACKAGES = sorted(path for path in MODULES if path.name == "__init__.py")
TOP_LEVEL = sorted(path for path in MODULES if path.parent == PACKAGE and path.name != "__init__.py")


@pytest.mark.parametrize("path", PACKAGES + TOP_LEVEL, ids=names_of(PACKAGES + TOP_LEVEL))
def test_each_package_and_top_module_says_who_runs_it_as_whom_and_after_what(path: Path) -> None:
    paragraph = next((part for part in docstring(path).split("\n\n") if WHO.match(part)), "")
    assert paragraph, f"{path.relative_to(ROOT)} does not say who runs it"
    paragraph = " ".join(paragraph.split())
    assert " as " in paragraph and WHEN.search(paragraph), f"{path.relative_to(ROOT)}: {paragraph!r}"


INNER = sorted(set(MODULES) - set(PACKAGES) - set(TOP_LEVEL))


@pytest.mark.parametrize("path", INNER, ids=names_of(INNER))
def test_a_module_says_who_runs_it_only_where_it_differs_from_its_package(path: Path) -> None:
    """The contracts of `common/` say each who uses them; in a program's folder, the package says
    it once, and a module adds only what differs ("Where it differs:")."""
    text = docstring(path)
    if path.parent == PACKAGE / "common":
        assert re.search(r"^Who uses it: ", text, re.MULTILINE), f"{path.relative_to(ROOT)} names no user"
        return
    repeated = re.search(r"^(Who runs it:|Runs in )", text, re.MULTILINE)
    assert not repeated, f"{path.relative_to(ROOT)} repeats its package's who-runs-it line"


def test_no_two_modules_share_a_who_runs_it_sentence() -> None:
    seen: dict[str, Path] = {}
    for path in MODULES:
        for part in docstring(path).split("\n\n"):
            if WHO.match(part) or part.startswith("Where it differs:"):
                first = " ".join(part.split(".")[0].split())
                assert first not in seen, f"{path.relative_to(ROOT)} repeats {seen[first].relative_to(ROOT)}"
                seen[first] = path


def test_the_readme_lists_every_exit_code_and_only_those() -> None:
    """`common/exits.py` is the code of the README's table: the same codes, each once."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Exit codes of the init", 1)[1].split("\n\n", 2)[1]
    listed: set[int] = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        listed |= {int(code) for code in re.findall(r"\d+", cell) if code != "128"}
    members = {int(code) for code in Exit} - {Exit.SIGNALLED}
    assert listed - {143} == members, (sorted(listed), sorted(members))


def test_one_module_replaces_files() -> None:
    """`os.replace` (rename over a file) lives in the one atomic writer, which fsyncs."""
    users = [path.relative_to(ROOT) for path in SOURCES if "os.replace(" in path.read_text()]
    assert users == [Path("entrypoint/common/rundir.py")], users


def test_no_type_ignore_anywhere() -> None:
    marker = "type: " + "ignore"
    found = [path.relative_to(ROOT) for path in PYTHON_FILES if path.is_file() and marker in path.read_text()]
    assert not found, found
