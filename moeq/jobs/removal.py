"""Archive or delete runs (CLI and web page): the database rows and, on delete, the run's saved model."""

from __future__ import annotations

import logging
import shutil

from moeq.db.repository.removal import delete_run, set_archived
from moeq.db.repository.runs import get_run
from moeq.db.store import Store
from moeq.jobs.settings import Settings

log = logging.getLogger(__name__)


def archive(store: Store, run_id: str, archived: bool = True) -> str:
    """Archive (hidden from `runs list` and the runs table unless asked for) or restore; one sentence."""
    with store.session() as s:
        before = set_archived(s, run_id, archived)
    short = run_id[:8]
    if before == archived:
        return f"run {short} was already {'archived' if archived else 'not archived'}; nothing changed"
    return f"run {short} archived (hidden from lists; `moeq runs archive --undo {short}` brings it back)" \
        if archived else f"run {short} restored from the archive"


def delete(settings: Settings, store: Store, run_id: str) -> str:
    """Delete an ended run: its row, progress history and saved model (artifacts); one sentence."""
    with store.session() as s:
        saved = bool(get_run(s, run_id).save_model)
        delete_run(s, run_id)
    folder = settings.artifacts_dir.expanduser() / run_id
    removed = ""
    if saved and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        removed = f" and its saved model ({folder})"
    log.info("run %s deleted", run_id)
    return f"run {run_id[:8]} deleted{removed}"
