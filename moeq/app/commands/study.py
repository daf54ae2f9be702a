"""`moeq study list | show ID | cancel ID | rerun ID` — studies queued by `moeq sweep`."""

from __future__ import annotations

import json

from moeq.app.cli_numbers import decimal_number, whole_number


def register(sub) -> None:
    p = sub.add_parser("study", help="list, show, cancel or re-run studies (grids queued by `moeq sweep`)")
    ssub = p.add_subparsers(dest="study_command", required=True)
    ls = ssub.add_parser("list", help="studies, newest first")
    ls.add_argument("--project")
    ls.add_argument("--limit", type=whole_number, default=30)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=handle_list)
    show = ssub.add_parser("show", help="progress and the grid as mean ± sd over seeds")
    show.add_argument("study_id")
    show.add_argument("--json", action="store_true")
    show.add_argument("--max-bits", type=decimal_number,
                      help="also name the best grid point at ≤ this many average bits")
    show.set_defaults(handler=handle_show)
    cancel = ssub.add_parser("cancel", help="cancel every run of the study that has not ended")
    cancel.add_argument("study_id")
    cancel.set_defaults(handler=handle_cancel)
    rerun = ssub.add_parser("rerun", help="queue again only the study's failed and cancelled runs")
    rerun.add_argument("study_id")
    rerun.set_defaults(handler=handle_rerun)


def handle_list(args, settings) -> int:
    from moeq.db.repository.studies import list_studies
    from moeq.db.store import Store

    with Store(settings.database_url).session() as s:
        rows = list_studies(s, (args.project,) if args.project else None, args.limit)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    print(f"{'study':<10} {'state':<11} {'progress':<10} {'model':<18} {'axes':<40} created")
    for r in rows:
        axes = " × ".join(f"{k} {len(v)}" for k, v in r["axes"].items())
        print(f"{r['study_id'][:8]:<10} {r['state']:<11} {r['progress']:<10} {r['model'][-18:]:<18} {axes[:40]:<40} "
              f"{(r['created_at'] or '')[:19]}")
    print(f"({len(rows)} studies)")
    return 0


def _load(settings, ref: str) -> dict:
    from moeq.db.repository.studies import mark_finished, resolve_study_id, get_study, study_runs, study_to_dict
    from moeq.db.store import Store

    with Store(settings.database_url).session() as s:
        sid = resolve_study_id(s, ref)
        mark_finished(s, sid)
        return study_to_dict(get_study(s, sid), study_runs(s, sid))


def handle_show(args, settings) -> int:
    from moeq.app.study_view import best_text, format_study

    d = _load(settings, args.study_id)
    print(json.dumps(d, indent=1, default=str) if args.json else format_study(d))
    if args.max_bits is not None and not args.json:
        print(best_text(d, args.max_bits))
    return 0


def handle_cancel(args, settings) -> int:
    from moeq.db.repository.studies import resolve_study_id
    from moeq.db.store import Store
    from moeq.jobs.study import cancel_study

    store = Store(settings.database_url)
    with store.session() as s:
        sid = resolve_study_id(s, args.study_id)
    cancelled = cancel_study(settings, store, sid)
    print(f"study {sid[:8]}: cancel requested for {len(cancelled)} run(s) not yet finished")
    return 0


def handle_rerun(args, settings) -> int:
    from moeq.db.repository.studies import resolve_study_id
    from moeq.db.store import Store
    from moeq.jobs.study import rerun_study

    store = Store(settings.database_url)
    with store.session() as s:
        sid = resolve_study_id(s, args.study_id)
    again = rerun_study(settings, store, sid)
    print(f"study {sid[:8]}: {len(again)} failed or cancelled run(s) queued again"
          + ("" if again else " (nothing to re-run)"))
    return 0
