"""`moeq serve [--host 127.0.0.1] [--port 7860]` — the web workbench (+ local worker in embedded mode)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="start the web workbench (embedded mode also starts a local worker)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (use 0.0.0.0 explicitly to expose it)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--no-worker", action="store_true", help="do not start the local worker (embedded mode)")
    p.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from moeq.app.serve_guard import check_exposure, check_port_free

    check_exposure(settings, args.host)  # one-line errors before anything starts
    check_port_free(args.host, args.port)
    from moeq.app.server import serve

    print(f"moeq: serving on http://{args.host}:{args.port} "
          f"({'embedded: SQLite + local worker' if settings.embedded else 'team mode'}); Ctrl-C or SIGTERM stops")
    serve(settings, args.host, args.port, worker=False if args.no_worker else None)
    return 0
