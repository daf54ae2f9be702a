"""Writing folders without ever deleting or overwriting user data (torch-free): a target must be new
or empty, content is written into a temporary sibling and renamed into place, permissions follow
the user's umask, and the temporary folder is removed on any failure."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from moeq.contract.errors import ArtifactError


def check_target(save_dir: Path) -> None:
    """A save/export target must not exist yet or be an empty directory: existing data is never
    deleted or overwritten."""
    save_dir = Path(save_dir)
    if save_dir.is_symlink() or (save_dir.exists() and not save_dir.is_dir()):
        raise ArtifactError(f"{save_dir} exists and is not a directory; choose a new folder")
    if save_dir.is_dir() and any(save_dir.iterdir()):
        raise ArtifactError(f"{save_dir} is not empty; moeq never overwrites existing files — choose a new or "
                            "empty folder")


def apply_umask(root: Path) -> None:
    """Give `root` (made 0700 by mkdtemp) and its files the permissions the user's umask asks for."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def write_dir_atomically(target: Path, fill) -> Path:
    """Call `fill(tmp)` on a fresh sibling folder, then rename it to `target` (which must be new or
    empty); on any failure the temporary folder is removed and `target` is untouched."""
    target = Path(target).expanduser().resolve()
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        apply_umask(tmp)
        check_target(target)
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
