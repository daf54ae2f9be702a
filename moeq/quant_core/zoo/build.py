"""Build or install a zoo model into the zoo directory, atomically (safe under concurrent runs)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
from pathlib import Path

from moeq.contract.errors import ModelError
from moeq.contract.zoo import ZOO, zoo_path

log = logging.getLogger(__name__)


def ensure_built(name: str, zoo_dir: Path, *, retrain: bool = False) -> Path:
    """Return the directory of zoo model `name`, building it first when missing (or `retrain`)."""
    if name not in ZOO:
        raise ModelError(f"unknown zoo model {name!r} (known: {', '.join(ZOO)})")
    target = zoo_path(name, zoo_dir)
    if (target / "config.json").is_file() and not retrain:
        return target
    Path(zoo_dir).mkdir(parents=True, exist_ok=True)
    with _build_lock(Path(zoo_dir) / f".{name}.lock"):
        # another process may have built it while we waited for the lock
        if (target / "config.json").is_file() and not retrain:
            return target
        _build_into(name, Path(zoo_dir), target, retrain)
    return target


@contextlib.contextmanager
def _build_lock(path: Path):
    """Exclusive inter-process lock: concurrent workers build a zoo model once, and nobody deletes a
    directory another process is loading from."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_into(name: str, zoo_dir: Path, target: Path, retrain: bool) -> None:
    entry = ZOO[name]
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=zoo_dir))
    try:
        log.info("building zoo model %s into %s", name, target)
        if entry.kind == "tiny":
            from moeq.quant_core.zoo.tiny import build_tiny

            built = build_tiny(entry.family, tmp / name)
        elif entry.kind == "derived":
            from moeq.quant_core.zoo.outliers import build_outlier_variant

            built = build_outlier_variant(ensure_built("testbed-mixtral", zoo_dir), tmp / name, retrain=retrain)
        else:
            from moeq.quant_core.zoo.testbed import install_testbed

            built = install_testbed(name, tmp, retrain=retrain)
        if target.exists():
            shutil.rmtree(target)
        Path(built).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
