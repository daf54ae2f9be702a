"""What the web pages may do, in one place: torch-free calls into db and jobs with access control."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from moeq.app.exports import ExportStore, rows_to_bytes
from moeq.app.safe_calls import MAX_NOTES, check_text, one_line_errors
from moeq.db.repository.queries import RunFilter, compare_runs, distinct_values, list_runs
from moeq.db.repository.results import run_to_dict
from moeq.db.repository.runs import get_run, resolve_run_id, set_notes
from moeq.db.repository.users import (DEFAULT_PROJECT, LOCAL_USER, AuthError, ensure_project, ensure_user,
                                 get_user, password_hash, require_access, user_projects, verify_user)
from moeq.db.store import Store
from moeq.jobs.settings import Settings
from moeq.contract.coverage import refused_note
from moeq.contract.describe import describe_dir
from moeq.contract.errors import MoeqError
from moeq.contract.limits import check_compare_count
from moeq.contract.model_ref import resolve_local_path
from moeq.contract.zoo import ZOO, zoo_path

log = logging.getLogger(__name__)

@dataclass
class AppServices:
    settings: Settings
    store: Store
    celery_app: object | None = None
    worker: object | None = None  # the supervised local worker (embedded mode), for its health line
    sessions: object | None = None  # moeq.app.login_guard.SessionRegistry (team mode)
    exports: ExportStore = field(default_factory=ExportStore)

    # -- identity -------------------------------------------------------------------------------
    def user_of(self, request) -> str:
        if not self.settings.auth:
            return LOCAL_USER
        name = getattr(request, "username", None)
        if not name:
            raise AuthError("not logged in")
        if self.sessions is not None:
            token = self.sessions.token_of(getattr(request, "cookies", None) or {})
            if not self.session_valid(token, name):
                self._end_session(request, token)
                raise AuthError("your session has ended (password changed or user removed); sign in again")
        return name

    def session_valid(self, token: str | None, name: str) -> bool:
        """`token` was issued to `name` by this server and `name`'s password has not changed since."""
        with self.store.session() as s:
            current = password_hash(s, name)
        return self.sessions is not None and self.sessions.valid(token, name, current)

    @staticmethod
    def _end_session(request, token: str | None) -> None:
        tokens = getattr(getattr(getattr(request, "request", None), "app", None), "tokens", None)
        if token and isinstance(tokens, dict):
            tokens.pop(token, None)

    def authenticate(self, username: str, password: str) -> bool:
        with self.store.session() as s:
            ok = verify_user(s, username, password)
            current = password_hash(s, username) if ok else None
        if ok and self.sessions is not None:
            self.sessions.logged_in(username, current)
        return ok

    def worker_health(self) -> str:
        """One line on the local worker (embedded mode) or where the workers are (team mode)."""
        if self.worker is None:
            return "workers: external (team mode: `moeq worker` on the GPU hosts)" if not self.settings.embedded \
                else "worker: not started by this server (--no-worker)"
        return self.worker.health()

    def projects(self, user: str) -> list[str]:
        with self.store.session() as s:
            if not self.settings.auth:
                ensure_user(s, LOCAL_USER)
                ensure_project(s, DEFAULT_PROJECT)
                return [p for p in user_projects(s, user)] or [DEFAULT_PROJECT]
            return user_projects(s, user)

    def _scope(self, user: str) -> tuple[str, ...] | None:
        return None if not self.settings.auth else tuple(self.projects(user))

    # -- models ---------------------------------------------------------------------------------
    def model_choices(self, local: bool = True) -> list[str]:
        """Zoo names, plus (with `local`, only for a logged-in page) the model folders in the roots."""
        if not local:
            return list(ZOO)
        local = []
        for root in self.settings.model_roots:
            if root.is_dir():
                local += sorted(str(p) for p in root.iterdir() if (p / "config.json").is_file())
        return [*ZOO, *local]

    def describe(self, ref: str) -> str:
        """One-line description (family, experts, layers) or the problem with the reference."""
        try:
            if ref in ZOO:
                entry = ZOO[ref]
                built = zoo_path(ref, self.settings.zoo_dir)
                if not (built / "config.json").is_file():
                    return f"{entry.family} — {entry.description} (built on first run)"
                path = built
            else:
                path = resolve_local_path(ref, self.settings.model_roots)
            info = describe_dir(path)
        except MoeqError as exc:
            return f"⚠ {exc}"
        shared = ", shared experts" if info.shared_experts else ""
        return (f"{info.family}: {info.num_layers} layers ({len(info.moe_layers)} MoE), {info.num_experts} experts, "
                f"top-{info.top_k}{shared}, hidden {info.hidden_size}{refused_note(info)}")

    # -- runs -----------------------------------------------------------------------------------
    def validate(self, recipe: dict, user: str | None = None) -> str | None:
        """None when the recipe would be queued (everything moeq.jobs.admission checks), else one line."""
        from moeq.jobs.admission import admit

        scope = self._scope(user) if user is not None else (() if self.settings.auth else None)
        try:
            admit(self.settings, self.store, recipe, scope)
        except MoeqError as exc:
            return str(exc)
        except Exception:  # never a raw driver or Python error on the page
            log.exception("validating a recipe failed")
            return "internal error while checking the recipe (see the server log)"
        return None

    def launch(self, user: str, project: str, recipe: dict, save_model: bool = False) -> str:
        from moeq.jobs.submit import submit

        with self.store.session() as s:
            if self.settings.auth:
                require_access(s, user, project)
        try:
            return submit(self.settings, self.store, recipe, user=user, project=project, save_model=save_model,
                          celery_app=self.celery_app, scope=self._scope(user))
        except MoeqError:
            raise
        except Exception:  # a raw driver/broker error would show SQL or URLs: log it, say one line
            log.exception("launch failed")
            raise MoeqError("the run could not be queued (internal error; see the server log)") from None

    @one_line_errors
    def runs(self, user: str, f: RunFilter) -> tuple[list[dict], int]:
        for name in ("model", "user", "project", "status", "technique", "search", "sort"):
            check_text(getattr(f, name), name)
        with self.store.session() as s:
            return list_runs(s, RunFilter(**{**f.__dict__, "projects": self._scope(user)}))

    @one_line_errors
    def resolve(self, user: str, ref: str) -> str:
        check_text(ref, "run id")
        """Full run id for a whole id or unique prefix among the runs `user` may see."""
        with self.store.session() as s:
            return resolve_run_id(s, ref, self._scope(user))

    @one_line_errors
    def run(self, user: str, run_id: str) -> dict:
        check_text(run_id, "run id")
        with self.store.session() as s:
            return run_to_dict(get_run(s, resolve_run_id(s, run_id, self._scope(user))))

    @one_line_errors
    def cancel(self, user: str, run_id: str) -> str:
        from moeq.jobs.submit import cancel

        run = self._cancellable(user, run_id)
        return cancel(self.settings, self.store, run["run_id"], self.celery_app)

    def _cancellable(self, user: str, run_id: str) -> dict:
        """The run, if `user` may cancel it: its author or an admin (other members may only read it)."""
        return self._launcher_or_admin(user, run_id, lambda run: MoeqError(
            f"only {run.get('user')!r} (who launched it) or an admin may cancel this run"))

    def _launcher_or_admin(self, user: str, run_id: str, refusal) -> dict:
        """The run `user` may read, if they launched it or are an admin; else `refusal(run)` is raised."""
        run = self.run(user, run_id)
        if self.settings.auth:
            with self.store.session() as s:
                require_access(s, user, run["project"])
                account = get_user(s, user)
                if run.get("user") != user and not (account is not None and account.is_admin):
                    raise refusal(run)
        return run

    def cancel_message(self, user: str, run_id: str) -> str:
        """Cancel and say what happened in words ('already finished (succeeded)' for an ended run)."""
        from moeq.jobs.submit import cancel_with_message

        run = self._cancellable(user, run_id)
        return cancel_with_message(self.settings, self.store, run["run_id"], self.celery_app)[1]

    @one_line_errors
    def archive(self, user: str, run_id: str, archived: bool = True) -> str:
        """Archive (or restore) a run: any member of its project may."""
        from moeq.jobs.removal import archive

        run = self.run(user, run_id)
        if self.settings.auth:
            with self.store.session() as s:
                require_access(s, user, run["project"])
        return archive(self.store, run["run_id"], archived)

    @one_line_errors
    def delete(self, user: str, run_id: str) -> str:
        """Delete a run: the user who launched it, or an admin (a project member may only archive it)."""
        from moeq.jobs.removal import delete

        run = self._launcher_or_admin(user, run_id, lambda run: AuthError(
            f"only {run['user']} (who launched run {run['run_id'][:8]}) or an admin may delete it; archive it instead"))
        return delete(self.settings, self.store, run["run_id"])

    def progress(self, user: str, run_id: str) -> dict:
        """Fraction, stage, attempt, elapsed and ETA of a run `user` may see."""
        from moeq.db.repository.progress import progress_info

        with self.store.session() as s:
            return progress_info(s, resolve_run_id(s, run_id, self._scope(user)))

    @one_line_errors
    def annotate(self, user: str, run_id: str, notes: str, tags: str) -> None:
        check_text(notes, "notes", MAX_NOTES)
        check_text(tags, "tags")
        rid = self.run(user, run_id)["run_id"]
        with self.store.session() as s:
            set_notes(s, rid, notes=notes, tags=[t for t in tags.split(",")])

    @one_line_errors
    def compare(self, user: str, run_ids: list[str], paired: bool = True) -> list[dict]:
        """The runs, each with its paired differences from the first (moeq.contract.stats) unless not `paired`."""
        check_compare_count(len(run_ids))
        for ref in run_ids:
            check_text(ref, "run id")
        with self.store.session() as s:
            scope = self._scope(user)
            return compare_runs(s, [resolve_run_id(s, r, scope) for r in run_ids], projects=scope, paired=paired)

    def model_runs(self, user: str, model: str, limit: int = 1000) -> list[dict]:
        rows, _ = self.runs(user, RunFilter(model=model, status="succeeded", limit=limit))
        return rows

    @one_line_errors
    def filter_values(self, user: str) -> dict[str, list[str]]:
        """Models and statuses of the runs `user` may see (for the filter dropdowns)."""
        with self.store.session() as s:
            scope = self._scope(user)
            return {"model": distinct_values(s, "model", scope), "status": distinct_values(s, "status", scope)}

    def close(self) -> None:
        """Remove this server's temporary files (exports not yet downloaded)."""
        self.exports.close()

    def export(self, rows: list[dict], fmt: str, user: str = LOCAL_USER) -> Path:
        """Write `rows` to a private CSV or JSON file that only `user` may download (see export_link)."""
        return self._export(rows, fmt, user)[1]

    def export_link(self, user: str, rows: list[dict], fmt: str) -> tuple[str, str]:
        """(URL relative to the page, file name) of a one-time download of `rows` for `user` (relative:
        the page may live under a secret path or a root path)."""
        name, _, filename = self._export(rows, fmt, user)
        return f"moeq/export/{name}", filename

    def _export(self, rows: list[dict], fmt: str, user: str) -> tuple[str, Path, str]:
        fmt = "json" if fmt == "json" else "csv"
        filename = f"runs-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        name, path = self.exports.add(user, rows_to_bytes(rows, fmt), filename)
        return name, path, filename
