"""`moeq submit` — validate a recipe (same flags as `moeq run`), queue it on the configured broker for
the workers, print the run id; `--wait` follows its progress to the end and prints the result."""

from __future__ import annotations

import argparse
import json
import sys
import time

from moeq.app.commands.run import add_recipe_args, admit_all, build_recipe_dict, epilog

EXAMPLES = """examples:
  moeq submit --model testbed-mixtral --bits W4A16 --techniques gptq
  for b in W2A16 W3A16 W4A16; do moeq submit --model testbed-mixtral --bits $b --techniques gptq; done
  moeq submit --recipe recipe.json --wait        # follow progress, print the result
runs are executed by `moeq worker` (team mode: MOEQ_BROKER_URL) or by the local worker of `moeq serve`"""
POLL_S = 0.5
NO_WORKER_HINT_S = 15.0


def register(sub) -> None:
    p = sub.add_parser("submit", help="queue one recipe for the workers and print the run id",
                       epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--seeds", help="queue the recipe once per seed, e.g. 0,1,2 (a group of repeats; "
                   "`moeq sweep` makes it a study)")
    p.add_argument("--save-model", action="store_true", help="the worker keeps the quantized model (artifacts)")
    p.add_argument("--wait", action="store_true", help="follow the run's progress to the end and print its result")
    p.add_argument("--json", action="store_true", help="with --wait: print the full result JSON")
    p.add_argument("--user", help="record the run under this user (default: local)")
    p.add_argument("--project", help="record the run under this project (default: default)")
    p.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from moeq.db.store import Store
    from moeq.jobs.settings import ensure_home
    from moeq.jobs.submit import submit

    recipe = build_recipe_dict(args)
    admit_all(settings, recipe)  # every problem at once; submit admits it again before anything is stored
    ensure_home(settings)
    store = Store(settings.database_url)  # submit admits the recipe (parse, roots, model) once
    if args.seeds is not None:
        return _submit_seeds(args, settings, store, recipe)
    run_id = submit(settings, store, recipe, user=args.user, project=args.project, save_model=args.save_model)
    print(run_id, flush=True)
    if not args.wait:
        return 0
    return follow(store, run_id, quiet=getattr(args, "quiet", False), as_json=args.json)


def _submit_seeds(args, settings, store, recipe: dict) -> int:
    """One run per seed (every seed's recipe admitted before any is queued); prints the run ids."""
    from moeq.contract.errors import MoeqError
    from moeq.contract.grid import parse_seeds
    from moeq.jobs.submit import admit_recipe, create, enqueue

    if args.wait:
        raise MoeqError("--seeds queues several runs; follow them with `moeq runs list` (no --wait)")
    admitted = [admit_recipe(settings, {**recipe, "seed": s}, store) for s in parse_seeds(args.seeds)]
    for r in admitted:
        run_id = create(store, r, user=args.user, project=args.project, save_model=args.save_model)
        enqueue(settings, store, run_id)
        print(run_id, flush=True)
    return 0


def follow(store, run_id: str, quiet: bool = False, as_json: bool = False) -> int:
    """Show the run's progress until it ends; print its result; 0 when it succeeded."""
    from moeq.app.progress_view import make_progress
    from moeq.app.summary import format_run
    from moeq.db.repository.progress import progress_info
    from moeq.db.repository.results import result_json, run_to_dict
    from moeq.db.repository.runs import TERMINAL, get_run

    view, attempt, hinted, t0 = None, 0, False, time.monotonic()
    try:
        while True:
            with store.session() as s:
                p = progress_info(s, run_id)
            if p["status"] == "running" and view is None:
                view = make_progress(quiet, elapsed0=p["elapsed_s"] or 0.0, floor=_eta_floor(store, run_id))
            if view is not None and p["attempt"] != attempt:
                if attempt:
                    view.restart(p["fraction"])
                attempt = p["attempt"]
            if view is not None and p["status"] in ("running", *TERMINAL):
                view(p["stage"] or p["status"], p["fraction"] if p["status"] != "succeeded" else 1.0)
            if p["status"] in TERMINAL:
                break
            if p["status"] == "queued" and not hinted and time.monotonic() - t0 > NO_WORKER_HINT_S and not quiet:
                hinted = True
                print(f"moeq: run {run_id[:8]} is still queued: is a worker running? (`moeq worker`, or "
                      "`moeq serve` in embedded mode)", file=sys.stderr)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print(f"moeq: stopped following; run {run_id[:8]} goes on (`moeq runs cancel {run_id[:8]}` stops it)",
              file=sys.stderr)
        return 130
    finally:
        if view is not None:
            view.close()
    with store.session() as s:
        run = get_run(s, run_id)
        result, d = result_json(run), run_to_dict(run)
    for w in result.get("warnings") or []:
        print(f"moeq: warning: {w}", file=sys.stderr)
    print(json.dumps(result, indent=1, default=str) if as_json else format_run(d))
    return 0 if d["status"] == "succeeded" else 1


def _eta_floor(store, run_id: str):
    """The floor the web card uses, for the bar (the stages ahead, measured on the last finished run)."""
    from moeq.db.repository.eta import stage_floor
    from moeq.db.repository.runs import get_run

    with store.session() as s:
        run = get_run(s, run_id)
        return stage_floor(s, run.model_ref, run.techniques, bool(run.save_model),
                           isinstance((run.recipe or {}).get("moqe"), dict))
