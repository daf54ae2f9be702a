"""Stable keys for on-disk caches (FP reference evaluations, EBSS sets): model files + settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def model_fingerprint(model_dir: Path) -> dict:
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime))
                   for p in Path(model_dir).glob("*.safetensors"))
    return {"config": (Path(model_dir) / "config.json").read_text(), "files": files}


def cache_key(model_dir: Path, **settings) -> str:
    blob = json.dumps({"model": model_fingerprint(model_dir), **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
