"""What the web pages may do, in one place: torch-free calls into db and jobs with access control."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from db.repository.queries import RunFilter, compare_runs, distinct_values, list_runs
from db.repository.results import run_to_dict
from db.repository.runs import get_run, resolve_run_id, set_notes
from db.repository.users import (DEFAULT_PROJECT, LOCAL_USER, AuthError, ensure_project, ensure_user,
                                 require_access, user_projects, verify_user)
from db.store import Store
from jobs.settings import Settings
from quant_core.adapters.describe import describe_dir
from quant_core.errors import MoeqError
from quant_core.model_ref import resolve_local_path
from quant_core.recipe import parse_recipe
from quant_core.zoo import ZOO, zoo_path


@dataclass
class AppServices:
    settings: Settings
    store: Store
    celery_app: object | None = None

    # -- identity -------------------------------------------------------------------------------
    def user_of(self, request) -> str:
        if not self.settings.auth:
            return LOCAL_USER
        name = getattr(request, "username", None)
        if not name:
            raise AuthError("not logged in")
        return name

    def authenticate(self, username: str, password: str) -> bool:
        with self.store.session() as s:
            return verify_user(s, username, password)

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
    def model_choices(self) -> list[str]:
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
                f"top-{info.top_k}{shared}, hidden {info.hidden_size}")

    # -- runs -----------------------------------------------------------------------------------
    def validate(self, recipe: dict) -> str | None:
        """None when the recipe is valid, else the message naming the key."""
        try:
            parse_recipe(recipe)
        except MoeqError as exc:
            return str(exc)
        return None

    def launch(self, user: str, project: str, recipe: dict, save_model: bool = False) -> str:
        from jobs.submit import submit

        with self.store.session() as s:
            if self.settings.auth:
                require_access(s, user, project)
        return submit(self.settings, self.store, recipe, user=user, project=project, save_model=save_model,
                      celery_app=self.celery_app)

    def runs(self, user: str, f: RunFilter) -> tuple[list[dict], int]:
        with self.store.session() as s:
            return list_runs(s, RunFilter(**{**f.__dict__, "projects": self._scope(user)}))

    def resolve(self, user: str, ref: str) -> str:
        """Full run id for a whole id or unique prefix among the runs `user` may see."""
        with self.store.session() as s:
            return resolve_run_id(s, ref, self._scope(user))

    def run(self, user: str, run_id: str) -> dict:
        with self.store.session() as s:
            return run_to_dict(get_run(s, resolve_run_id(s, run_id, self._scope(user))))

    def cancel(self, user: str, run_id: str) -> str:
        from jobs.submit import cancel

        run = self.run(user, run_id)
        if self.settings.auth:
            with self.store.session() as s:
                require_access(s, user, run["project"])
        return cancel(self.settings, self.store, run["run_id"], self.celery_app)

    def cancel_message(self, user: str, run_id: str) -> str:
        """Cancel and say what happened in words ('already finished (succeeded)' for an ended run)."""
        from jobs.submit import cancel_with_message

        run = self.run(user, run_id)
        if self.settings.auth:
            with self.store.session() as s:
                require_access(s, user, run["project"])
        return cancel_with_message(self.settings, self.store, run["run_id"], self.celery_app)[1]

    def progress(self, user: str, run_id: str) -> dict:
        """Fraction, stage, attempt, elapsed and ETA of a run `user` may see."""
        from db.repository.progress import progress_info

        with self.store.session() as s:
            return progress_info(s, resolve_run_id(s, run_id, self._scope(user)))

    def annotate(self, user: str, run_id: str, notes: str, tags: str) -> None:
        rid = self.run(user, run_id)["run_id"]
        with self.store.session() as s:
            set_notes(s, rid, notes=notes, tags=[t for t in tags.split(",")])

    def compare(self, user: str, run_ids: list[str]) -> list[dict]:
        with self.store.session() as s:
            scope = self._scope(user)
            return compare_runs(s, [resolve_run_id(s, r, scope) for r in run_ids], projects=scope)

    def model_runs(self, user: str, model: str, limit: int = 1000) -> list[dict]:
        rows, _ = self.runs(user, RunFilter(model=model, status="succeeded", limit=limit))
        return rows

    def filter_values(self) -> dict[str, list[str]]:
        with self.store.session() as s:
            return {"model": distinct_values(s, "model"), "status": distinct_values(s, "status")}

    def export(self, rows: list[dict], fmt: str) -> Path:
        """Write `rows` to a temporary CSV or JSON file for download."""
        out = Path(tempfile.mkdtemp(prefix="moeq-export-")) / f"runs.{fmt}"
        if fmt == "json":
            out.write_text(json.dumps(rows, indent=1))
        else:
            buf = io.StringIO()
            cols = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))] if rows else ["run_id"]
            writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            out.write_text(buf.getvalue())
        return out
