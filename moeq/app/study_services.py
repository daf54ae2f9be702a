"""What the Studies tab may do (plan, launch, show, cancel, re-run a study), with the same access
rules as runs: a study is seen by members of its project (team mode) and launched into a project
its user belongs to."""

from __future__ import annotations

import json

from moeq.app.safe_calls import check_text, one_line_errors
from moeq.app.services import AppServices
from moeq.app.sweep_grid import grid_recipes, parse_axes
from moeq.contract.errors import MoeqError
from moeq.db.repository.studies import (get_study, list_studies, mark_finished, resolve_study_id, study_runs,
                                        study_to_dict)
from moeq.db.repository.users import require_access


class StudyServices:
    def __init__(self, svc: AppServices) -> None:
        self.svc = svc

    def _base(self, text: str) -> dict:
        try:
            base = json.loads(text or "")
        except (json.JSONDecodeError, RecursionError) as exc:
            raise MoeqError(f"base recipe is not valid JSON: {exc}") from None
        if not isinstance(base, dict) or not base.get("model"):
            raise MoeqError("base recipe must be a JSON object with a \"model\"")
        return base

    @one_line_errors
    def plan(self, user: str, base_text: str, axes_text: str, seeds: str):
        """(axes, points, admitted recipes, estimate seconds, runs with a recorded cost) — nothing stored."""
        from moeq.jobs.study import admit_grid, estimate_seconds

        check_text(axes_text, "grid axes")
        check_text(seeds, "seeds")
        axes = parse_axes((axes_text or "").splitlines(), seeds)
        points, dicts = grid_recipes(self._base(base_text), axes)
        recipes = admit_grid(self.svc.settings, self.svc.store, dicts, self.svc._scope(user))
        estimate, known = estimate_seconds(self.svc.store, recipes)
        return axes, points, recipes, estimate, known

    @one_line_errors
    def launch(self, user: str, project: str, name: str, base_text: str, axes_text: str, seeds: str) -> str:
        from moeq.jobs.study import launch_study

        check_text(name, "study name")
        if self.svc.settings.auth:
            with self.svc.store.session() as s:
                require_access(s, user, project)
        axes, points, recipes, estimate, _ = self.plan(user, base_text, axes_text, seeds)
        base = self._base(base_text)
        study_id, _ = launch_study(self.svc.settings, self.svc.store, name=name or "", model=base["model"],
                                   base_recipe=base, axes=axes, points=points, recipes=recipes, estimate_s=estimate,
                                   user=user, project=project, celery_app=self.svc.celery_app)
        return study_id

    @one_line_errors
    def show(self, user: str, ref: str) -> dict:
        check_text(ref, "study id")
        with self.svc.store.session() as s:
            sid = resolve_study_id(s, ref, self.svc._scope(user))
            mark_finished(s, sid)
            return study_to_dict(get_study(s, sid), study_runs(s, sid))

    @one_line_errors
    def list(self, user: str) -> list[dict]:
        with self.svc.store.session() as s:
            return list_studies(s, self.svc._scope(user))

    def _owned(self, user: str, ref: str) -> str:
        d = self.show(user, ref)
        if self.svc.settings.auth:
            with self.svc.store.session() as s:
                require_access(s, user, d["project"])
        return d["study_id"]

    @one_line_errors
    def cancel(self, user: str, ref: str) -> int:
        from moeq.jobs.study import cancel_study

        return len(cancel_study(self.svc.settings, self.svc.store, self._owned(user, ref), self.svc.celery_app))

    @one_line_errors
    def rerun(self, user: str, ref: str) -> int:
        from moeq.jobs.study import rerun_study

        return len(rerun_study(self.svc.settings, self.svc.store, self._owned(user, ref), self.svc.celery_app))
