"""Create runs from recipe dicts (validated before anything is stored or queued) and start them."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from moeq.db.repository.owners import CLI, QUEUE
from moeq.db.repository.runs import create_run, get_run, request_cancel, set_task_id
from moeq.db.repository.users import DEFAULT_PROJECT, LOCAL_USER
from moeq.db.store import Store
from moeq.jobs.settings import Settings
from moeq.contract import __version__
from moeq.contract.recipe import Recipe, parse_recipe, recipe_summary
from moeq.contract.vocabulary import recipe_tags


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        sha = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def admit_recipe(settings: Settings, recipe, store: Store | None = None,
                 scope: tuple[str, ...] | None = None) -> Recipe:
    """Parse and check `recipe` once, everything moeq.jobs.admission checks before queuing (one MoeqError
    line otherwise). Pass the returned Recipe on to `create` / `create_and_execute`: it is not
    parsed again in this process."""
    from moeq.jobs.admission import admit

    return admit(settings, store, recipe, scope)


def create(store: Store, recipe: dict | Recipe, *, user: str | None = None, project: str | None = None,
           save_model: bool = False, settings: Settings | None = None, scope: tuple[str, ...] | None = None,
           origin: str = QUEUE) -> str:
    """Insert a queued run; returns its id. A recipe dict is admitted first (RecipeError names the key;
    with `settings`, everything moeq.jobs.admission checks before queuing); a Recipe is one `admit_recipe`
    returned in this process and is stored as it is."""
    if isinstance(recipe, Recipe):
        parsed = recipe
    elif settings is not None:
        parsed = admit_recipe(settings, recipe, store, scope)
    else:
        parsed = parse_recipe(recipe)
    with store.session() as s:
        run = create_run(s, parsed.to_dict(), summary=recipe_summary(parsed), techniques=recipe_tags(parsed),
                         user=user or LOCAL_USER, project=project or DEFAULT_PROJECT, code_version=code_version(),
                         origin=origin)
        run.save_model = save_model
        return run.id


def enqueue(settings: Settings, store: Store, run_id: str, celery_app=None) -> str:
    """Send the run to the `gpu` queue by name with only its id; records the Celery task id."""
    from moeq.jobs.celery_app import QUEUE, TASK_NAME, make_celery

    app = celery_app or make_celery(settings)
    res = app.send_task(TASK_NAME, args=[run_id], queue=QUEUE)
    with store.session() as s:
        set_task_id(s, run_id, res.id)
    return res.id


def submit(settings: Settings, store: Store, recipe: dict, *, user: str | None = None, project: str | None = None,
           save_model: bool = False, celery_app=None, scope: tuple[str, ...] | None = None) -> str:
    run_id = create(store, recipe, user=user, project=project, save_model=save_model, settings=settings,
                    scope=scope)
    enqueue(settings, store, run_id, celery_app)
    return run_id


def cancel(settings: Settings, store: Store, run_id: str, celery_app=None) -> str:
    """Flag the run (the pipeline stops between blocks) and revoke its queued message."""
    with store.session() as s:
        status = request_cancel(s, run_id)
        task_id = get_run(s, run_id).celery_task_id
    if task_id and status == "cancelled":
        from moeq.jobs.celery_app import make_celery

        (celery_app or make_celery(settings)).control.revoke(task_id)
    return status


def cancel_with_message(settings: Settings, store: Store, run_id: str, celery_app=None) -> tuple[str, str]:
    """(status, a sentence for people saying what was done): a queued run is cancelled at once; a running
    one is flagged and the sentence names the process that will stop it; an ended one is left alone."""
    from moeq.db.repository.owners import end_dead_cli_runs

    short = run_id[:8]
    with store.session() as s:
        end_dead_cli_runs(s)  # a `moeq run` killed meanwhile: ended now, not "cancel requested"
        run = get_run(s, run_id)
        before, stage, origin, host, pid = run.status, run.stage, run.origin, run.worker_host, run.owner_pid
    if before in ("succeeded", "failed", "cancelled"):
        said = stage if stage and stage.startswith(before) else before
        return before, f"run {short} already finished ({said}); nothing to cancel"
    status = cancel(settings, store, run_id, celery_app)
    if status == "cancelled":
        return status, f"run {short} cancelled (it had not started)"
    if status == "running":
        who = (f"its moeq run process (pid {pid} on {host})" if origin == CLI
               else f"worker {host}" if host else "its worker")
        return status, f"run {short}: cancel requested; {who} stops it after the current layer"
    return status, f"run {short} already finished ({status}); nothing to cancel"


def create_and_execute(settings: Settings, recipe: dict | Recipe, *, user: str | None = None,
                       project: str | None = None, save_dir: Path | None = None, store: Store | None = None,
                       progress=None) -> dict:
    """`moeq run`: validate (unless `recipe` is an admitted Recipe), record the run, execute it in this
    process with the same parsed recipe, return the result JSON."""
    from moeq.jobs.execute import execute_run

    store = store or Store(settings.database_url)
    if not isinstance(recipe, Recipe):
        recipe = admit_recipe(settings, recipe, store)
    from moeq.jobs.admission import check_eval_dependencies

    check_eval_dependencies(recipe)  # it runs here, whatever the workers of a team have installed
    run_id = create(store, recipe, user=user, project=project, save_model=save_dir is not None, settings=settings,
                    origin=CLI)
    return execute_run(settings, run_id, store=store, save_dir=save_dir, progress=progress, recipe=recipe,
                       interrupt_ends_run=True)
