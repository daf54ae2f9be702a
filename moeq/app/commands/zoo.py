"""`moeq zoo list | build NAME` — the built-in test models."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("zoo", help="list or build built-in models (testbeds, tiny-<family>)")
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    ls = zsub.add_parser("list", help="list built-in models and whether they are built")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=handle_list)
    b = zsub.add_parser("build", help="build (or copy) a built-in model into $MOEQ_HOME/zoo")
    b.add_argument("name")
    b.add_argument("--retrain", action="store_true",
                   help="testbeds: train from scratch (testbed-outliers: fine-tune testbed-mixtral) "
                        "instead of copying shipped weights")
    b.set_defaults(handler=handle_build)


def handle_list(args, settings) -> int:
    from moeq.contract.zoo import ZOO, zoo_path

    rows = [{"name": e.name, "kind": e.kind, "family": e.family,
             "built": (zoo_path(e.name, settings.zoo_dir) / "config.json").is_file(),
             "description": e.description} for e in ZOO.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<20} {r['kind']:<8} {r['family']:<12} {'built' if r['built'] else '-':<6} {r['description']}")
    return 0


def handle_build(args, settings) -> int:
    from moeq.jobs.local import build_zoo_model

    path = build_zoo_model(settings, args.name, retrain=args.retrain)
    print(path)
    return 0
