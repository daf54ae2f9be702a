"""Web exports: private files handed to the user who asked for them, once.

Each export is written 0600 into one 0700 folder per server and registered under a random name
(32 bytes) with its owner. `GET /moeq/export/<name>` (moeq.app.http_app) gives it to that owner
only and removes it; an export not fetched within EXPORT_KEEP_S is removed, and the whole folder
goes at shutdown. Nothing passes through Gradio's shared temporary folder.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) are prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

EXPORT_KEEP_S = 600.0  # an export not downloaded by then is removed
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value):
    """A CSV cell a spreadsheet shows as text, never evaluates."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def rows_to_bytes(rows: list[dict], fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(rows, indent=1).encode()
    buf = io.StringIO()
    cols = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))] if rows else ["run_id"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: neutralize(r.get(k)) for k in cols} for r in rows)
    return buf.getvalue().encode()


@dataclass(frozen=True)
class Export:
    owner: str
    path: Path
    filename: str
    created: float


class ExportStore:
    def __init__(self, keep_s: float = EXPORT_KEEP_S) -> None:
        self.keep_s = keep_s
        self._folder: Path | None = None
        self._items: dict[str, Export] = {}
        self._lock = threading.Lock()

    def folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="moeq-export-"))  # 0700
            return self._folder

    def add(self, owner: str, data: bytes, filename: str) -> tuple[str, Path]:
        """Store `data` for `owner`; returns (its secret name, its path)."""
        self.prune()
        name = secrets.token_urlsafe(32)
        path = self.folder() / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with self._lock:
            self._items[name] = Export(owner, path, filename, time.monotonic())
        return name, path

    def take(self, name: str, user: str) -> tuple[bytes, str] | None:
        """(content, file name) of `name` if it belongs to `user`, removing it; else None."""
        self.prune()
        with self._lock:
            item = self._items.get(name)
            if item is None or not secrets.compare_digest(item.owner, user):
                return None
            del self._items[name]
        try:
            return item.path.read_bytes(), item.filename
        finally:
            item.path.unlink(missing_ok=True)

    def prune(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [n for n, e in self._items.items() if now - e.created > self.keep_s]
            for n in old:
                self._items.pop(n).path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            folder, self._folder = self._folder, None
            self._items.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
