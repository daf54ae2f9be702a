"""`moeq serve [--host 127.0.0.1] [--port 7860]` — the web workbench (+ local worker in embedded mode)."""

from __future__ import annotations

import sys

from moeq.app.cli_numbers import whole_number


def register(sub) -> None:
    p = sub.add_parser("serve", help="start the web workbench (embedded mode also starts a local worker)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (use 0.0.0.0 explicitly to expose it)")
    p.add_argument("--port", type=whole_number, default=7860)
    p.add_argument("--no-worker", action="store_true", help="do not start the local worker (embedded mode)")
    p.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from moeq.app.serve_guard import check_exposure, check_port_free

    check_exposure(settings, args.host)  # one-line errors before anything starts
    check_port_free(args.host, args.port)
    from moeq.app.server import serve

    def announce(line: str) -> None:  # the CLI's own output: the URL (with its token) and the protection
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    serve(settings, args.host, args.port, worker=False if args.no_worker else None, announce=announce)
    return 0
