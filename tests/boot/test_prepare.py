"""Phase `prepare`, its links: a link the image expects in a fresh tmpfs (the gateway's compile
cache, baked into the image, reached from its temp dir) is made when nothing is at its path and
its target exists; whatever is already there stays exactly as it was.

Run by pytest as any user: the phase is called directly on scratch directories.
"""

from __future__ import annotations

import os
from pathlib import Path

from entrypoint.boot import prepare
from entrypoint.common.plans import PreparePlan


def run(links: tuple[tuple[str, str], ...]) -> dict:
    result = prepare.run(PreparePlan((), None, links))
    return {"status": result.status, "linked": result.figures["linked"], "warnings": result.warnings}


def test_a_missing_link_to_an_existing_directory_is_made(tmp_path: Path) -> None:
    cache, temp = tmp_path / "image-cache", tmp_path / "tmpfs"
    cache.mkdir()
    temp.mkdir()
    link = temp / "node-compile-cache"
    assert run(((str(link), str(cache)),)) == {"status": "ok", "linked": [str(link)], "warnings": []}
    assert os.readlink(link) == str(cache)


def test_no_link_to_a_target_the_image_does_not_carry(tmp_path: Path) -> None:
    link = tmp_path / "node-compile-cache"
    assert run(((str(link), str(tmp_path / "absent")),))["linked"] == []
    assert not os.path.lexists(link)


def test_whatever_is_at_the_path_already_stays(tmp_path: Path) -> None:
    cache = tmp_path / "image-cache"
    cache.mkdir()
    directory, other_link, dangling = tmp_path / "dir", tmp_path / "other", tmp_path / "dangling"
    directory.mkdir()
    (directory / "entry").write_text("written by the program\n")
    other_link.symlink_to(tmp_path)
    dangling.symlink_to(tmp_path / "gone")
    links = tuple((str(path), str(cache)) for path in (directory, other_link, dangling))
    assert run(links) == {"status": "ok", "linked": [], "warnings": []}
    assert (directory / "entry").read_text() == "written by the program\n"
    assert os.readlink(other_link) == str(tmp_path)
    assert os.readlink(dangling) == str(tmp_path / "gone")


def test_a_link_that_cannot_be_made_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    cache = tmp_path / "image-cache"
    cache.mkdir()
    link = tmp_path / "no-such-dir" / "node-compile-cache"
    outcome = run(((str(link), str(cache)),))
    assert outcome["status"] == "warned" and outcome["linked"] == []
    [warned] = outcome["warnings"]
    assert warned["event"] == "link_not_created" and warned["path"] == str(link)
