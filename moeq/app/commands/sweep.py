"""`moeq sweep` — one study from a grid: the recipe flags of `moeq run`, grid axes (`--grid NAME=V1,V2`)
and `--seeds`; prints the grid and its estimated cost, then queues every run as one study."""

from __future__ import annotations

import argparse
import copy
import json

from moeq.app.commands.run import add_recipe_args, build_recipe_dict, epilog

EXAMPLES = """examples:
  moeq sweep --model testbed-mixtral --grid bits=W3A16,W4A16 --grid techniques=gptq,agq,eaquant --seeds 0,1,2
  moeq sweep --model testbed-mixtral --grid techniques=rtn,rotation+gptq --grid allocation.method=uniform,router_norm
  moeq sweep ... --dry-run          # print the grid and the estimate, queue nothing
axes: bits, techniques (alternatives by ',', a combination by '+'), group-size, router, samples, seq-len,
eval-limit, or any recipe key in dotted form (values parsed as JSON where they are); followed by
`moeq study show ID`"""
FLAG_AXES = {"bits": "bits", "techniques": "techniques", "group-size": "group_size", "router": "router",
             "samples": "samples", "seq-len": "seq_len", "eval-limit": "eval_limit"}


def register(sub) -> None:
    p = sub.add_parser("sweep", help="queue a grid of recipes (× seeds) as one study",
                       epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2", help="a grid axis (repeatable)")
    p.add_argument("--seeds", help="repeat every grid point over these seeds, e.g. 0,1,2")
    p.add_argument("--name", default="", help="a name for the study")
    p.add_argument("--dry-run", action="store_true", help="print the grid and its estimate; queue nothing")
    p.add_argument("--json", action="store_true", help="print the study id, run ids and estimate as JSON")
    p.add_argument("--user", help="record the study under this user (default: local)")
    p.add_argument("--project", help="record the study under this project (default: default)")
    p.set_defaults(handler=handle)


def axes_of(args) -> dict[str, list]:
    from moeq.contract.errors import MoeqError
    from moeq.contract.grid import parse_axis, parse_seeds

    axes: dict[str, list] = {}
    for text in args.grid:
        name, values = parse_axis(text)
        if name in axes:
            raise MoeqError(f"--grid: axis {name!r} is given twice")
        if name == "seed":
            raise MoeqError("--grid: give seeds with --seeds 0,1,2")
        axes[name] = values
    if args.seeds is not None:
        axes["seed"] = parse_seeds(args.seeds)
    elif getattr(args, "seed", None) is not None:
        axes["seed"] = [args.seed]
    if not axes:
        raise MoeqError("moeq sweep needs at least one --grid axis or --seeds (see `moeq sweep --help`)")
    return axes


def _nested(key: str, value) -> dict:
    out: dict = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def point_recipe(args, point: dict) -> dict:
    """The recipe dict of one grid point: the flags with the point's flag axes, then its dotted keys and seed."""
    from moeq.contract.presets import merge

    a = copy.copy(args)
    for name, value in point.items():
        if name in FLAG_AXES:
            setattr(a, FLAG_AXES[name], str(value).replace("+", ",") if name == "techniques" else
                    (value if name not in ("samples", "seq-len", "eval-limit") else int(value)))
    recipe = build_recipe_dict(a)
    for name, value in point.items():
        if name == "seed":
            recipe["seed"] = int(value)
        elif name not in FLAG_AXES:
            recipe = merge(recipe, _nested(name, value))
    return recipe


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no succeeded run of this model and these techniques is recorded yet)"
    return f"{seconds / 60:.1f} worker-minutes" if seconds >= 60 else f"{seconds:.0f} worker-seconds"


def handle(args, settings) -> int:
    from moeq.contract.grid import grid_points
    from moeq.contract.recipe import recipe_summary
    from moeq.db.store import Store
    from moeq.jobs.settings import ensure_home
    from moeq.jobs.study import admit_grid, estimate_seconds, launch_study

    axes = axes_of(args)
    points = grid_points(axes)
    dicts = [point_recipe(args, p) for p in points]
    ensure_home(settings)
    store = Store(settings.database_url)
    recipes = admit_grid(settings, store, dicts)
    estimate, known = estimate_seconds(store, recipes)
    if not args.json:
        print(f"study grid: {' × '.join(f'{k} {len(v)}' for k, v in axes.items())} = {len(points)} runs")
        for p, r in zip(points, recipes):
            print(f"  {json.dumps(p, default=str):<60} {recipe_summary(r)}")
        print(f"estimated cost: {_duration(estimate)}"
              + (f" (from recorded runs of {known} of the {len(points)} grid points)" if estimate is not None else ""))
    if args.dry_run:
        return 0
    base = build_recipe_dict(args)
    study_id, run_ids = launch_study(settings, store, name=args.name, model=base["model"], base_recipe=base,
                                     axes=axes, points=points, recipes=recipes, estimate_s=estimate,
                                     user=args.user, project=args.project)
    if args.json:
        print(json.dumps({"study_id": study_id, "run_ids": run_ids, "estimate_s": estimate}))
    else:
        print(f"study {study_id} queued: {len(run_ids)} runs (`moeq study show {study_id[:8]}`)")
    return 0
