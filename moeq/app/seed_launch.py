"""The Launch form's "repeat over seeds": one run per seed (each admitted before any is queued), shown
afterwards as a group (mean ± sd, n) in the Runs and Compare tabs."""

from __future__ import annotations

from moeq.app.escape import h
from moeq.app.services import AppServices
from moeq.contract.grid import parse_seeds


def launch_seeds(svc: AppServices, user: str, project: str, recipe: dict, save_model: bool, seeds_text: str) -> str:
    """Queue `recipe` once per seed; returns the message the Launch tab shows."""
    seeds = parse_seeds(seeds_text)
    for s in seeds:  # every seed's recipe is checked before the first is queued
        problem = svc.validate({**recipe, "seed": s}, user)
        if problem:
            return f"⚠ not launched (seed {s}): {h(problem)}"
    ids = [svc.launch(user, project, {**recipe, "seed": s}, save_model) for s in seeds]
    links = ", ".join(f"<a href='?run={h(r)}'>{h(r[:8])}</a> (seed {s})" for r, s in zip(ids, seeds))
    return f"✓ queued {len(ids)} runs of one recipe: {links} — compare them to see mean ± sd over the seeds"
