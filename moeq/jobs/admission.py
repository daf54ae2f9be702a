"""Everything the worker would reject, checked before a run is stored or queued (torch-free).

`admit` parses the recipe (bounds included), turns MoQE `run:<id>` variants into the saved model of
a run the user may read, confines every named file to its roots (moeq.contract.sources), and checks
the model: it exists inside the model roots (or is a zoo name), its config.json is sane, it is an
MoE of a supported family, its safetensors files are whole, the group size divides its sizes, and
what its config claims fits a worker's memory (moeq.contract.model_size). Last, the cost model
(moeq.contract.cost) weighs the recipe's tokens by the model's parameters against MOEQ_WORK_BUDGET.
Every failure is one MoeqError line; nothing reaches the database or the queue before this passes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from moeq.db.repository.runs import RunNotFound, resolve_run_id
from moeq.db.store import Store
from moeq.jobs.local import saved_roots
from moeq.jobs.settings import Settings
from moeq.contract import limits
from moeq.contract.cost import check_work
from moeq.contract.errors import ModelError, RecipeError
from moeq.contract.group_fit import group_problem, widths_problem
from moeq.contract.model_size import ModelSize, check_fits, model_size
from moeq.contract.recipe import Recipe, parse_recipe, quantized_recipes
from moeq.contract.sources import confine_recipe, inside
from moeq.contract.zoo import ZOO, zoo_path
from moeq.contract.zoo_widths import ZOO_WIDTHS


def _variants(data: dict) -> list | None:
    moqe = data.get("moqe")
    variants = moqe.get("variants") if isinstance(moqe, dict) else None
    return variants if isinstance(variants, list) else None


def _run_artifacts(settings: Settings, store: Store | None, ref: str, scope, key: str) -> Path:
    """The saved model of run `ref`, which `scope` (None: every project) must be allowed to read
    (`store` None: the database of `settings`, opened only now that a run is named)."""
    store = store or Store(settings.database_url)
    try:
        with store.session() as s:
            run_id = resolve_run_id(s, ref, scope)
    except RunNotFound as exc:
        raise RecipeError(key, str(exc)) from None
    path = settings.artifacts_dir.expanduser().resolve() / run_id
    if not (path / "moeq.json").is_file():
        raise RecipeError(key, f"run {run_id[:8]} has no saved model (launch it with 'save the quantized model')")
    return path


def _check_saved_paths(settings: Settings, store: Store | None, data: dict, scope) -> None:
    """Rewrite `run:<id>` variants; a `path:` into the artifacts must be a run the user may read."""
    variants = _variants(data)
    if not variants:
        return
    artifacts = settings.artifacts_dir.expanduser().resolve()
    for i, v in enumerate(variants):
        key = f"moqe.variants[{i}]"
        if isinstance(v, str) and v.startswith("run:"):
            variants[i] = f"path:{_run_artifacts(settings, store, v[4:], scope, key)}"
        elif isinstance(v, str) and v.startswith("path:"):
            try:
                path = Path(v[5:]).expanduser().resolve()
            except (OSError, RuntimeError, ValueError):
                continue  # confine_recipe reports it
            if path == artifacts:
                raise RecipeError(key, "the artifacts folder itself is not a saved model: name one run's "
                                       "(`run:<id>`)")
            if inside(path, (artifacts,)) and scope is not None:
                run_id = path.relative_to(artifacts).parts[0]
                _run_artifacts(settings, store, run_id, scope, key)


def _model_dir(settings: Settings, ref: str) -> Path | None:
    """Directory of the model to check now; None for a zoo model that is not built yet."""
    from moeq.contract.model_ref import resolve_local_path

    if ref in ZOO:
        built = zoo_path(ref, settings.zoo_dir)
        return built if (built / "config.json").is_file() else None
    return resolve_local_path(ref, settings.model_roots)


# a zoo model that is not built yet: parameters per token assumed (the zoo's models are far smaller)
UNBUILT_ZOO_SIZE = ModelSize(total=100_000_000, active=100_000_000, largest_layer=10_000_000)


def check_model(settings: Settings, recipe: Recipe) -> tuple[ModelSize, int]:
    """The model's size and hidden size, or one MoeqError line on what is wrong with it."""
    from moeq.contract.describe import describe_config, read_config
    from moeq.contract.checkpoint_check import check_checkpoint_files

    from moeq.contract.coverage import check_run_family
    from moeq.contract.describe import detected_family, family_for_config
    from moeq.contract.families import FAMILY_BY_NAME

    path = _model_dir(settings, recipe.model)
    if path is None:  # a zoo model not built yet: its family and widths are known from the catalog
        if recipe.model in ZOO:
            family = ZOO[recipe.model].family
            check_run_family(recipe, FAMILY_BY_NAME.get(family) or detected_family(family))
            _check_groups(recipe, lambda group: widths_problem(ZOO_WIDTHS[recipe.model], group, recipe.model))
        return UNBUILT_ZOO_SIZE, 1024
    config = read_config(path)
    if config.get("auto_map") and not settings.allow_remote_code:
        raise ModelError(f"{recipe.model} needs trust_remote_code (custom modeling code); refused — an operator "
                         "can allow it with MOEQ_ALLOW_REMOTE_CODE=1")
    hidden = describe_config(config).hidden_size
    check_run_family(recipe, family_for_config(config))
    size = model_size(config)
    check_fits(size, check_checkpoint_files(path), settings.worker_memory_bytes, recipe.model)
    _check_groups(recipe, lambda group: group_problem(config, group, recipe.model))
    return size, hidden


def _check_groups(recipe: Recipe, problem_of) -> None:
    """Every grid the run quantizes with (MoQE variants each) against the model's widths
    (`problem_of(group)`: one line or None)."""
    for prefix, r in quantized_recipes(recipe):
        if r.weights.bits < 16:
            problem = problem_of(r.weights.group_size)
            if problem:
                raise RecipeError(f"{prefix}weights.group_size", problem)


def check_eval_dependencies(recipe: Recipe, have=importlib.util.find_spec) -> None:
    """RecipeError naming what to install when an evaluation task needs a package this install lacks
    (`have`: module name → spec or None). Checked where the run will execute: the CLI and embedded mode."""
    harness = [t for t in recipe.eval.tasks if t.startswith("lm_eval:")]
    if harness and have("lm_eval") is None:
        raise RecipeError("eval.tasks", f"{', '.join(harness)} need(s) the lm-evaluation-harness, which is not "
                          "installed: pip install 'moeq[lmeval]' (or drop the lm_eval: tasks)")


def admit(settings: Settings, store: Store | None, data, scope: tuple[str, ...] | None = None) -> Recipe:
    """The parsed recipe, ready to store and queue, or one MoeqError naming the problem. `scope`: the
    projects whose runs the user may read (None: all, e.g. the CLI or single-user mode); `store` None
    opens the database only if the recipe names a run (MoQE `run:<id>` variants)."""
    limits.check_raw(data)
    if isinstance(data, (str, bytes)):
        data = limits.loads(data)
    if isinstance(data, dict):
        data = dict(data)
        if isinstance(data.get("moqe"), dict):
            data["moqe"] = dict(data["moqe"])
            if isinstance(data["moqe"].get("variants"), list):
                data["moqe"]["variants"] = list(data["moqe"]["variants"])
        limits.check_raw(data)
        _check_saved_paths(settings, store, data, scope)
    recipe = parse_recipe(data)
    if not recipe.model.strip():
        raise RecipeError("model", "no model given (a zoo name or a model directory)")
    confine_recipe(recipe, data_roots=settings.data_roots, task_roots=settings.task_roots,
                   saved_roots=saved_roots(settings))
    size, hidden = check_model(settings, recipe)
    check_work(recipe, size.active, hidden, settings.work_budget, recipe.model)
    if settings.embedded:  # the run executes in this installation (a team's workers may have their own)
        check_eval_dependencies(recipe)
    return recipe
