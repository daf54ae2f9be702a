"""`moeq run` — quantize and evaluate one recipe now, record it, print the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from moeq.app.cli_numbers import decimal_number, whole_number
from moeq.app.summary import format_summary
from moeq.contract import vocabulary as vocab
from moeq.contract.errors import MoeqError, RecipeError

EXAMPLES = """examples:
  moeq run --model testbed-mixtral --bits W4A16 --techniques gptq
  moeq run --model testbed-mixtral --bits W4A4 --techniques eaquant --json
  moeq run --model /models/Mixtral-8x7B --recipe recipe.json --save out/mixtral-w4"""


def epilog(examples: str) -> str:
    """Examples plus the technique and preset names the registry knows today."""
    return f"{examples}\n{vocab.cli_techniques_help()}"


def register(sub) -> None:
    import argparse

    p = sub.add_parser("run", help="quantize + evaluate one recipe and print the result",
                       epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--save", type=Path, help="write the quantized model (HF checkpoint + codes) to this directory")
    p.add_argument("--json", action="store_true", help="print the full result JSON")
    p.add_argument("--user", help="record the run under this user (default: local)")
    p.add_argument("--project", help="record the run under this project (default: default)")
    p.set_defaults(handler=handle)


def add_recipe_args(p) -> None:
    """The recipe flags `moeq run` and `moeq submit` share."""
    p.add_argument("--model", help="zoo name (see 'moeq zoo list') or a local Hugging Face model directory")
    p.add_argument("--recipe", type=Path, help="recipe JSON file (see README 'Recipes'); flags below override it")
    p.add_argument("--bits", help="weight/activation bits, e.g. W4A16, W3A4, W4A16g32 (g-1 = per channel)")
    p.add_argument("--techniques", help="comma-separated techniques/presets, e.g. rotation,gptq or eaquant")
    p.add_argument("--group-size", help="weight group size (integer) or 'channel'")
    p.add_argument("--router", choices=vocab.ROUTER_MODES, help="router treatment")
    p.add_argument("--samples", type=whole_number, help="calibration sequences")
    p.add_argument("--seq-len", type=whole_number, help="calibration sequence length")
    p.add_argument("--eval-limit", type=whole_number, help="items per evaluation task")
    p.add_argument("--seed", type=whole_number)
    # the common recipe parts without a recipe file: mixed precision, calibration, evaluation
    p.add_argument("--allocation", choices=vocab.ALLOCATION_METHODS, help="mixed-precision bit allocation")
    p.add_argument("--avg-bits", type=decimal_number, help="average weight bits of the allocation, e.g. 3.0")
    p.add_argument("--tiers", help="bit widths the allocation may use, e.g. 2,3,4")
    p.add_argument("--calib-source", help="calibration text: auto | random | file:<path>")
    p.add_argument("--sampler", choices=vocab.SAMPLERS, help="calibration sampler")
    p.add_argument("--tasks", help="evaluation tasks, comma-separated: testbed, file:<jsonl>, lm_eval:<task>")


def build_recipe_dict(args) -> dict:
    """Recipe dict from --recipe plus overriding flags (validated later by parse_recipe)."""
    from moeq.contract.limits import MAX_RECIPE_BYTES, loads
    from moeq.contract.presets import expand, merge
    from moeq.contract.recipe import parse_bits
    from moeq.contract.safe_open import read_limited

    recipe: dict = {}
    if args.recipe is not None:
        try:
            text = read_limited(args.recipe, MAX_RECIPE_BYTES)
        except OSError as exc:
            raise RecipeError("<file>", f"cannot read {args.recipe}: {exc.strerror or exc}") from None
        try:
            recipe = loads(text)  # depth and digits bounded: one line
        except RecipeError as exc:  # 'not valid JSON: …', 'JSON nested too deeply', …, with the file named
            joint = " is " if exc.detail.startswith("not valid JSON") else ": "
            raise RecipeError("<file>", f"{args.recipe}{joint}{exc.detail}") from None
        if not isinstance(recipe, dict):
            raise RecipeError("<root>", f"{args.recipe} must hold a JSON object")
    if args.model:
        recipe["model"] = args.model
    if args.bits:
        recipe = merge(recipe, parse_bits(args.bits))
    if args.techniques:
        recipe = merge(recipe, expand(args.techniques.split(",")))
    if args.group_size:
        g = None if args.group_size in ("channel", "none", "-1") else \
            int(args.group_size) if args.group_size.lstrip("-").isdigit() else args.group_size  # the parser names it
        recipe = merge(recipe, {"weights": {"group_size": g}})
    if args.router:
        recipe["router"] = args.router
    for flag, key in (("samples", "samples"), ("seq_len", "seq_len")):
        if getattr(args, flag) is not None:
            recipe = merge(recipe, {"calibration": {key: getattr(args, flag)}})
    if args.eval_limit is not None:
        recipe = merge(recipe, {"eval": {"limit": args.eval_limit}})
    if args.seed is not None:
        recipe["seed"] = args.seed
    recipe = _common_flags(args, recipe)
    if not recipe.get("model"):
        raise RecipeError("model", "no model given (use --model or a recipe with \"model\")")
    return recipe


def _common_flags(args, recipe: dict) -> dict:
    """--allocation/--avg-bits/--tiers, --calib-source/--sampler, --tasks laid over the recipe."""
    from moeq.contract.presets import merge

    alloc = {k: v for k, v in (("method", getattr(args, "allocation", None)),
                               ("avg_bits", getattr(args, "avg_bits", None)),
                               ("tiers", _tiers(getattr(args, "tiers", None)))) if v is not None}
    if alloc:
        recipe = merge(recipe, {"allocation": alloc})
    calib = {k: v for k, v in (("source", getattr(args, "calib_source", None)),
                               ("sampler", getattr(args, "sampler", None))) if v is not None}
    if calib:
        recipe = merge(recipe, {"calibration": calib})
    if getattr(args, "tasks", None) is not None:
        recipe = merge(recipe, {"eval": {"tasks": [t.strip() for t in args.tasks.split(",") if t.strip()]}})
    return recipe


def _tiers(text: str | None):
    """'2,3,4' → [2, 3, 4]; a word that is not a number is left for the recipe parser to name."""
    if text is None:
        return None
    return [int(t) if t.strip().isdigit() else t.strip() for t in text.split(",") if t.strip()]


def _install_zoo_model_first(settings, data: dict) -> None:
    """A zoo model this run would install anyway is installed before admission, so admission can check
    the recipe against its real widths (group sizes) before a run is recorded. Only for a recipe that
    parses: a bad one is refused without installing anything."""
    from moeq.contract.errors import MoeqError as Problem
    from moeq.contract.recipe import parse_recipe
    from moeq.contract.zoo import ZOO, zoo_path

    try:
        recipe = parse_recipe(data)
    except Problem:
        return
    if recipe.model in ZOO and not (zoo_path(recipe.model, settings.zoo_dir) / "config.json").is_file():
        from moeq.jobs.local import build_zoo_model

        build_zoo_model(settings, recipe.model)


def admit_all(settings, data: dict, store=None):
    """The admitted Recipe, or one MoeqError listing every problem of the recipe at once."""
    from moeq.app.form_check import recipe_problems
    from moeq.jobs.submit import admit_recipe

    try:
        return admit_recipe(settings, data, store)
    except RecipeError as exc:
        problems = [str(e) for e in recipe_problems(data)]
        if str(exc) not in problems:
            problems.append(str(exc))
        if len(problems) <= 1:
            raise
        raise MoeqError(f"{len(problems)} problems in the recipe:\n  " + "\n  ".join(problems)) from None


def handle(args, settings) -> int:
    from moeq.contract.recipe import recipe_summary

    try:
        data = build_recipe_dict(args)
        if args.save is not None:
            from moeq.jobs.local import check_save_target

            check_save_target(args.save)  # refused before any work, never deleted or overwritten
        _install_zoo_model_first(settings, data)
        recipe = admit_all(settings, data)  # parsed and checked once, here
        result = _execute(settings, recipe, args.save, args.user, args.project, getattr(args, "quiet", False))
    except MoeqError as exc:
        if args.json:
            print(json.dumps({"status": "failed", "error": {"type": type(exc).__name__, "message": str(exc)}}))
            return 2
        raise
    for w in result.get("warnings") or []:
        print(f"moeq: warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    elif result["status"] == "succeeded":
        print(format_summary({**result, "recipe_summary": recipe_summary(recipe)}))
    else:
        print(f"moeq: error: run {result['run_id']} {result['status']}: {result['error']['type']}: "
              f"{result['error']['message']}", file=sys.stderr)
    return 0 if result["status"] == "succeeded" else 1


def _execute(settings, recipe, save: Path | None, user: str | None, project: str | None,
             quiet: bool = False) -> dict:
    """Record the run in the database and execute it in this process (progress on stderr)."""
    from moeq.app.progress_view import make_progress
    from moeq.jobs.interrupt import sigterm_interrupts
    from moeq.jobs.submit import create_and_execute

    from moeq.db.store import Store

    store = Store(settings.database_url)  # one store for the ETA floor and the run
    view = make_progress(quiet, floor=_eta_floor(store, recipe, save is not None))
    try:
        with sigterm_interrupts():  # Ctrl-C and SIGTERM end the run as interrupted, not "running" forever
            return create_and_execute(settings, recipe, user=user, project=project, save_dir=save, progress=view,
                                      store=store)
    finally:
        view.close()


def _eta_floor(store, recipe, save_model: bool):
    """The measured cost of the stages ahead, from the last succeeded run of this model and techniques."""
    from moeq.contract.vocabulary import recipe_tags
    from moeq.db.repository.eta import stage_floor

    with store.session() as s:
        return stage_floor(s, recipe.model, recipe_tags(recipe), save_model, recipe.moqe is not None)
