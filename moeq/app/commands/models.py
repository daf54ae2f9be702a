"""`moeq models check DIR` — the preflight: what moeq sees in a checkpoint and which techniques apply."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="inspect a model checkpoint before a run")
    msub = p.add_subparsers(dest="models_command", required=True)
    c = msub.add_parser("check", help="family, MoE layers, experts, routing rule, parameters, and for each "
                                      "technique: applies / refused and why")
    c.add_argument("model", help="a model directory (inside the model roots) or a built zoo name")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=handle_check)


def handle_check(args, settings) -> int:
    from moeq.contract.model_ref import resolve_local_path
    from moeq.contract.preflight import check_model_dir, report_lines
    from moeq.contract.zoo import ZOO, zoo_path

    from moeq.contract.errors import ModelError

    path = zoo_path(args.model, settings.zoo_dir) if args.model in ZOO else \
        resolve_local_path(args.model, settings.model_roots)
    if args.model in ZOO and not (path / "config.json").is_file():
        raise ModelError(f"zoo model {args.model} is not built yet (moeq zoo build {args.model})")
    report = check_model_dir(path)
    print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
    return 0
