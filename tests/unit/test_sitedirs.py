from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import UnsafePath
from orchestrator.files.sitedirs import SiteDirs

NAME = "site_0001"
OWNER = 100_001


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "sites"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the sites root, standing for /etc or another site's files."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "passwd").write_text("root:x:0:0\n")
    return path


def listing(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# --- ensure -------------------------------------------------------------------------------------


async def test_ensure_creates_public_and_private(root: Path) -> None:
    site = await SiteDirs(root).ensure(NAME, OWNER)
    assert site == root / NAME
    assert (site / "public").is_dir()
    assert (site / "private").is_dir()
    assert listing(site) == {"public", "private"}


async def test_ensure_creates_the_root_if_missing(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    site = await SiteDirs(root).ensure(NAME, OWNER)
    assert (site / "public").is_dir()


async def test_ensure_is_idempotent_and_keeps_files(root: Path) -> None:
    dirs = SiteDirs(root)
    site = await dirs.ensure(NAME, OWNER)
    (site / "public" / "index.html").write_text("hi")
    (site / "run.sh").write_text("echo")
    assert await dirs.ensure(NAME, OWNER) == site
    assert (site / "public" / "index.html").read_text() == "hi"
    assert listing(site) == {"public", "private", "public/index.html", "run.sh"}


async def test_ensure_returns_a_path_under_the_real_root(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    # The configured root itself may be a link (an operator's choice); it is resolved once.
    site = await SiteDirs(alias).ensure(NAME, OWNER)
    assert site == root / NAME
    assert (root / NAME / "public").is_dir()


async def test_ensure_refuses_a_site_dir_that_is_a_symlink(root: Path, outside: Path) -> None:
    (root / NAME).symlink_to(outside)
    with pytest.raises(UnsafePath) as info:
        await SiteDirs(root).ensure(NAME, OWNER)
    assert info.value.code == "unsafe_path"
    assert listing(outside) == {"passwd"}, "nothing may be created in the link's target"
    assert (root / NAME).is_symlink()


async def test_ensure_refuses_a_dangling_symlink(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "nowhere"
    (root / NAME).symlink_to(target)
    with pytest.raises(UnsafePath):
        await SiteDirs(root).ensure(NAME, OWNER)
    assert not target.exists()


async def test_ensure_refuses_a_site_dir_that_is_a_file(root: Path) -> None:
    (root / NAME).write_text("not a dir")
    with pytest.raises(UnsafePath):
        await SiteDirs(root).ensure(NAME, OWNER)


@pytest.mark.parametrize("sub", ["public", "private"])
async def test_ensure_refuses_a_subdir_that_is_a_symlink(root: Path, outside: Path, sub: str) -> None:
    site = root / NAME
    site.mkdir()
    (site / sub).symlink_to(outside)
    with pytest.raises(UnsafePath):
        await SiteDirs(root).ensure(NAME, OWNER)
    assert listing(outside) == {"passwd"}
    assert (site / sub).is_symlink()


async def test_ensure_refuses_public_pointing_at_another_site(root: Path) -> None:
    dirs = SiteDirs(root)
    other = await dirs.ensure("site_0002", OWNER)
    site = root / NAME
    site.mkdir()
    (site / "public").symlink_to(other / "private")
    with pytest.raises(UnsafePath):
        await dirs.ensure(NAME, OWNER)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape", "/etc"])
async def test_ensure_refuses_names_that_are_not_one_component(root: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        await SiteDirs(root).ensure(name, OWNER)
    assert not (root.parent / "escape").exists()


# --- trash --------------------------------------------------------------------------------------


async def test_trash_moves_the_site_dir_with_its_files(root: Path) -> None:
    dirs = SiteDirs(root)
    site = await dirs.ensure(NAME, OWNER)
    (site / "public" / "index.html").write_text("hi")
    (site / "private" / "secret").write_text("s")
    moved = await dirs.trash(NAME, tag="abcd1234")
    assert moved is not None
    assert moved.parent == root / ".trash"
    assert moved.name.startswith(NAME + "-")
    assert moved.name.endswith("-abcd1234")
    assert not site.exists()
    assert (moved / "public" / "index.html").read_text() == "hi"
    assert (moved / "private" / "secret").read_text() == "s"


async def test_trash_twice_keeps_both_copies(root: Path) -> None:
    dirs = SiteDirs(root)
    await dirs.ensure(NAME, OWNER)
    first = await dirs.trash(NAME, tag="one")
    await dirs.ensure(NAME, OWNER)
    second = await dirs.trash(NAME, tag="two")
    assert first is not None
    assert second is not None
    assert first != second
    assert first.is_dir()
    assert second.is_dir()


async def test_trash_uses_the_configured_trash_name(root: Path) -> None:
    dirs = SiteDirs(root, trash_name=".deleted")
    await dirs.ensure(NAME, OWNER)
    moved = await dirs.trash(NAME, tag="t")
    assert moved is not None
    assert moved.parent == root / ".deleted"


async def test_trash_of_a_missing_dir_is_none(root: Path) -> None:
    assert await SiteDirs(root).trash(NAME, tag="t") is None
    assert not (root / ".trash").exists() or listing(root / ".trash") == set()


async def test_trash_refuses_a_symlinked_site_dir(root: Path, outside: Path) -> None:
    link = root / NAME
    link.symlink_to(outside)
    with pytest.raises(UnsafePath):
        await SiteDirs(root).trash(NAME, tag="t")
    assert link.is_symlink(), "the link is not moved"
    assert os.readlink(link) == str(outside)
    assert listing(outside) == {"passwd"}, "the link's target is untouched"
    assert not (root / ".trash").exists() or listing(root / ".trash") == set()


async def test_trash_refuses_a_file_in_place_of_the_site_dir(root: Path) -> None:
    (root / NAME).write_text("x")
    with pytest.raises(UnsafePath):
        await SiteDirs(root).trash(NAME, tag="t")
    assert (root / NAME).read_text() == "x"


async def test_trash_refuses_a_trash_dir_that_is_a_symlink(root: Path, outside: Path) -> None:
    dirs = SiteDirs(root)
    await dirs.ensure(NAME, OWNER)
    (root / ".trash").symlink_to(outside)
    with pytest.raises(UnsafePath):
        await dirs.trash(NAME, tag="t")
    assert (root / NAME / "public").is_dir()
    assert listing(outside) == {"passwd"}


async def test_trash_moves_a_site_whose_public_dir_is_a_link_without_following_it(root: Path, outside: Path) -> None:
    site = root / NAME
    site.mkdir()
    (site / "public").symlink_to(outside)
    moved = await SiteDirs(root).trash(NAME, tag="t")
    assert moved is not None
    assert (moved / "public").is_symlink()
    assert listing(outside) == {"passwd"}


async def test_trash_under_a_missing_root_is_none(tmp_path: Path) -> None:
    assert await SiteDirs(tmp_path / "nonexistent").trash("site_0001", "t") is None


# --- ownership and run.sh -----------------------------------------------------------------------


async def test_a_new_site_directory_belongs_to_the_site_user(root: Path) -> None:
    site = await SiteDirs(root).ensure(NAME, OWNER)
    for path in (site, site / "public", site / "private"):
        assert (path.stat().st_uid, path.stat().st_gid) == (OWNER, OWNER), path


async def test_an_existing_site_is_handed_over_whole_without_following_links(root: Path, outside: Path) -> None:
    site = root / NAME
    (site / "public" / "deep").mkdir(parents=True)
    (site / "public" / "deep" / "page.html").write_text("old files made by root")
    (site / "public" / "escape").symlink_to(outside / "passwd")
    before = (outside / "passwd").stat().st_uid

    await SiteDirs(root).ensure(NAME, OWNER)

    assert (site / "public" / "deep" / "page.html").stat().st_uid == OWNER
    assert (site / "public" / "escape").lstat().st_uid == OWNER  # the link itself
    assert (outside / "passwd").stat().st_uid == before  # never its target


async def test_a_setuid_bit_does_not_survive_the_handover(root: Path) -> None:
    binary = root / NAME / "private" / "suid"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF")
    binary.chmod(0o4755)

    await SiteDirs(root).ensure(NAME, OWNER)

    mode = binary.stat()
    assert mode.st_uid == OWNER and not mode.st_mode & 0o4000


@pytest.mark.parametrize("where", ["", "private", "public"])
async def test_run_sh_is_found_where_the_site_looks_for_it(root: Path, where: str) -> None:
    dirs = SiteDirs(root)
    site = await dirs.ensure(NAME, OWNER)
    assert not await dirs.has_run_script(NAME)
    (site / where / "run.sh").write_text("#!/bin/sh\n")
    assert await dirs.has_run_script(NAME)


async def test_a_run_sh_link_counts_but_a_directory_does_not(root: Path, outside: Path) -> None:
    dirs = SiteDirs(root)
    site = await dirs.ensure(NAME, OWNER)
    (site / "run.sh").mkdir()
    assert not await dirs.has_run_script(NAME)
    (site / "public" / "run.sh").symlink_to("/site/private/start.sh")  # resolves inside the container
    assert await dirs.has_run_script(NAME)


async def test_a_missing_site_has_no_run_sh(root: Path) -> None:
    assert not await SiteDirs(root).has_run_script("site_9999")
    assert not await SiteDirs(root / "missing").has_run_script(NAME)
