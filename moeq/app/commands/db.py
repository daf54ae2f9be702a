"""`moeq db upgrade | downgrade REV | current` — schema migrations."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("db", help="database migrations")
    dsub = p.add_subparsers(dest="db_command", required=True)
    up = dsub.add_parser("upgrade", help="apply migrations up to REV (default head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=handle)
    down = dsub.add_parser("downgrade", help="revert migrations down to REV")
    down.add_argument("revision")
    down.set_defaults(handler=handle)
    cur = dsub.add_parser("current", help="print the current revision")
    cur.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from moeq.db.engine import check_connection, make_engine, safe_url
    from moeq.db.migrate import current_revision, downgrade, upgrade

    engine = make_engine(settings.database_url)
    check_connection(engine)
    if args.db_command == "upgrade":
        upgrade(engine, args.revision)
    elif args.db_command == "downgrade":
        downgrade(engine, args.revision)
    print(f"{safe_url(settings.database_url)}: revision {current_revision(engine) or 'base'}")
    return 0
