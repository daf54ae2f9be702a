"""`moeq sweep` — one study from a grid: the recipe flags of `moeq run`, grid axes (`--grid NAME=V1,V2`)
and `--seeds`; prints the grid and its estimated cost, then queues every run as one study."""

from __future__ import annotations

import argparse
import json

from moeq.app.commands.run import add_recipe_args, build_recipe_dict, epilog

EXAMPLES = """examples:
  moeq sweep --model testbed-mixtral --grid bits=W3A16,W4A16 --grid techniques=gptq,agq,eaquant --seeds 0,1,2
  moeq sweep --model testbed-mixtral --grid techniques=rtn,rotation+gptq --grid allocation.method=uniform,router_norm
  moeq sweep ... --dry-run          # print the grid and the estimate, queue nothing
axes: bits, techniques (alternatives by ',', a combination by '+'), group-size, router, samples, seq-len,
eval-limit, or any recipe key in dotted form (values parsed as JSON where they are); followed by
`moeq study show ID`"""


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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no succeeded run of this model and these techniques is recorded yet)"
    return f"{seconds / 60:.1f} worker-minutes" if seconds >= 60 else f"{seconds:.0f} worker-seconds"


def handle(args, settings) -> int:
    from moeq.app.sweep_grid import grid_recipes, parse_axes
    from moeq.contract.recipe import recipe_summary
    from moeq.db.store import Store
    from moeq.jobs.settings import ensure_home
    from moeq.jobs.study import admit_grid, estimate_seconds, launch_study

    if args.seeds is None and args.seed is not None:
        args.seeds = str(args.seed)
    axes = parse_axes(args.grid, args.seeds)
    base = build_recipe_dict(args)
    points, dicts = grid_recipes(base, axes)
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
    study_id, run_ids = launch_study(settings, store, name=args.name, model=base["model"], base_recipe=base,
                                     axes=axes, points=points, recipes=recipes, estimate_s=estimate,
                                     user=args.user, project=args.project)
    if args.json:
        print(json.dumps({"study_id": study_id, "run_ids": run_ids, "estimate_s": estimate}))
    else:
        print(f"study {study_id} queued: {len(run_ids)} runs (`moeq study show {study_id[:8]}`)")
    return 0
