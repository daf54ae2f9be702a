"""`moeq runs list | show ID | compare ID ID... | cancel ID | archive ID... | delete ID...` — the history the
web page shows."""

from __future__ import annotations

import json

from moeq.app.cli_numbers import whole_number


def register(sub) -> None:
    p = sub.add_parser("runs", help="list, show, compare, cancel, archive or delete recorded runs")
    rsub = p.add_subparsers(dest="runs_command", required=True)
    ls = rsub.add_parser("list", help="recorded runs, newest first")
    for flag in ("model", "user", "project", "status", "technique", "search"):
        ls.add_argument(f"--{flag}")
    ls.add_argument("--sort", default="created", help="created|accuracy|bits|kl|perplexity|agreement|model|status")
    ls.add_argument("--asc", action="store_true")
    ls.add_argument("--limit", type=whole_number, default=30)
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--archived", action="store_true", help="list the archived runs (hidden otherwise)")
    ls.set_defaults(handler=handle_list)
    show = rsub.add_parser("show", help="one run's summary (--json: the full result)")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print the full result JSON")
    show.set_defaults(handler=handle_show)
    cmp_ = rsub.add_parser("compare", help="side-by-side table of 2-N runs, per task")
    cmp_.add_argument("run_ids", nargs="+")
    cmp_.add_argument("--json", action="store_true")
    cmp_.set_defaults(handler=handle_compare)
    cancel = rsub.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run_id")
    cancel.set_defaults(handler=handle_cancel)
    arch = rsub.add_parser("archive", help="hide ended runs from lists (kept; --undo brings them back)")
    arch.add_argument("run_ids", nargs="+")
    arch.add_argument("--undo", action="store_true", help="restore archived runs")
    arch.set_defaults(handler=handle_archive)
    rm = rsub.add_parser("delete", help="delete ended runs: their records, progress and saved models")
    rm.add_argument("run_ids", nargs="+")
    rm.set_defaults(handler=handle_delete)


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def handle_list(args, settings) -> int:
    from moeq.app.paired_view import format_groups
    from moeq.db.repository.queries import RunFilter, list_runs
    from moeq.db.store import Store

    f = RunFilter(model=args.model, user=args.user, project=args.project, status=args.status,
                  technique=args.technique, search=args.search, sort=args.sort, descending=not args.asc,
                  limit=args.limit, archived=bool(args.archived))
    with Store(settings.database_url).session() as s:
        rows, total = list_runs(s, f)
    if args.json:
        print(json.dumps({"total": total, "runs": rows}, indent=1))
        return 0
    print(f"{'run':<10} {'status':<10} {'model':<18} {'recipe':<42} {'bits (nominal)':<15} {'seed':>4} {'acc':>6} "
          f"{'KL':>7} {'agree':>6}  created")
    for r in rows:
        bits = f"{_fmt(r['avg_weight_bits'], '.3f')} ({r.get('nominal_bits') or '-'})"
        print(f"{r['run_id'][:8]:<10} {r['status']:<10} {r['model'][-18:]:<18} {r['recipe_summary'][:42]:<42} "
              f"{bits:<15} {_fmt(r.get('seed'), 'd'):>4} {_fmt(r['avg_accuracy']):>6} {_fmt(r['kl'], '.4f'):>7} "
              f"{_fmt(r['mean_topk_agreement']):>6}  {r['created_at'][:19]}")
    print(f"({len(rows)} of {total})")
    groups = format_groups(rows)  # repeats of one recipe over seeds among the listed runs
    if groups:
        print(groups)
    return 0


def handle_show(args, settings) -> int:
    from moeq.db.repository.results import result_json
    from moeq.db.repository.runs import get_run, resolve_run_id
    from moeq.db.store import Store

    from moeq.app.summary import format_run
    from moeq.db.repository.results import run_to_dict

    with Store(settings.database_url).session() as s:
        run = get_run(s, resolve_run_id(s, args.run_id))
        result, d = result_json(run), run_to_dict(run)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(format_run(d))
    return 0


def handle_compare(args, settings) -> int:
    from moeq.db.repository.queries import compare_runs
    from moeq.db.repository.runs import resolve_run_id
    from moeq.db.store import Store

    from moeq.app.paired_view import format_groups, format_paired
    from moeq.app.summary import format_compare
    from moeq.contract.errors import MoeqError
    from moeq.contract.limits import check_compare_count

    if len(args.run_ids) < 2:
        raise MoeqError("runs compare needs at least two run ids (e.g. `moeq runs compare 1a2b3c4d 5e6f7a8b`)")
    check_compare_count(len(args.run_ids))
    with Store(settings.database_url).session() as s:
        runs = compare_runs(s, [resolve_run_id(s, r) for r in args.run_ids])
    models = sorted({r["model"] for r in runs})
    if len(models) > 1:
        import sys

        print(f"moeq: warning: these runs are on {len(models)} different models ({', '.join(models)}); "
              "their metrics are not directly comparable", file=sys.stderr)
    if args.json:
        print(json.dumps(runs, indent=1))
        return 0
    print(format_compare(runs))
    print()
    print(format_paired(runs))
    groups = format_groups(runs)
    if groups:
        print()
        print(groups)
    return 0


def handle_cancel(args, settings) -> int:
    from moeq.db.repository.runs import resolve_run_id
    from moeq.db.store import Store
    from moeq.jobs.submit import cancel_with_message

    store = Store(settings.database_url)
    with store.session() as s:
        run_id = resolve_run_id(s, args.run_id)
    print(cancel_with_message(settings, store, run_id)[1])
    return 0


def _resolve_all(store, refs: list[str]) -> list[str]:
    """Every id resolved before anything changes (one unknown id: nothing is archived or deleted)."""
    from moeq.db.repository.runs import resolve_run_id

    with store.session() as s:
        return [resolve_run_id(s, r) for r in refs]


def handle_archive(args, settings) -> int:
    from moeq.db.store import Store
    from moeq.jobs.removal import archive

    store = Store(settings.database_url)
    for run_id in _resolve_all(store, args.run_ids):
        print(archive(store, run_id, not args.undo))
    return 0


def handle_delete(args, settings) -> int:
    from moeq.db.store import Store
    from moeq.jobs.removal import delete

    store = Store(settings.database_url)
    for run_id in _resolve_all(store, args.run_ids):
        print(delete(settings, store, run_id))
    return 0
