"""`moeq users add NAME [--password-stdin] [--project P] [--admin] | remove NAME [--project P] | list`
— team accounts. A password reset (add on an existing user) or a removal ends that user's sessions."""

from __future__ import annotations

import getpass
import sys

from moeq.contract.errors import MoeqError


def register(sub) -> None:
    p = sub.add_parser("users", help="manage users and project membership")
    usub = p.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="create a user (or reset the password) and add to projects")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--project", action="append", default=[], help="project to join (repeatable)")
    add.add_argument("--admin", action="store_true", help="may see every project")
    add.set_defaults(handler=handle_add)
    rm = usub.add_parser("remove", help="remove a user (no login, sessions end; runs are kept) or, with "
                         "--project, only their membership")
    rm.add_argument("name")
    rm.add_argument("--project", action="append", default=[], help="only leave this project (repeatable)")
    rm.set_defaults(handler=handle_remove)
    ls = usub.add_parser("list", help="list users and their projects")
    ls.set_defaults(handler=handle_list)


def handle_add(args, settings) -> int:
    from moeq.db.repository.users import MAX_LOGIN_NAME, add_member, ensure_user, plausible_name
    from moeq.db.store import Store

    for kind, name in [("user", args.name), *(("project", p) for p in args.project)]:
        if not plausible_name(name):  # the same rule the login applies: a name that can sign in
            raise MoeqError(f"{kind} name {name[:40]!r}{'…' if len(name) > 40 else ''}: 1 to {MAX_LOGIN_NAME} "
                            "printable characters (no tabs, newlines or control characters)")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        raise MoeqError("no terminal to ask for the password on; pipe it in with --password-stdin")
    else:
        try:
            password = getpass.getpass("password: ")
        except EOFError:
            raise MoeqError("no password given") from None
    if len(password) < 8:
        raise MoeqError("password must have at least 8 characters")
    store = Store(settings.database_url)
    with store.session() as s:
        ensure_user(s, args.name, password, admin=args.admin)
        for project in args.project:
            add_member(s, project, args.name)
    print(f"user {args.name} saved" + (f", member of {', '.join(args.project)}" if args.project else ""))
    return 0


def handle_remove(args, settings) -> int:
    from moeq.db.repository.users import remove_member, remove_user
    from moeq.db.store import Store

    store = Store(settings.database_url)
    with store.session() as s:
        if args.project:
            for project in args.project:
                if not remove_member(s, project, args.name):
                    raise MoeqError(f"user {args.name!r} is not a member of project {project!r}")
            print(f"user {args.name} removed from {', '.join(args.project)}")
        else:
            remove_user(s, args.name)
            print(f"user {args.name} removed (cannot log in; open sessions end; their runs are kept)")
    return 0


def handle_list(args, settings) -> int:
    from sqlalchemy import select

    from moeq.db.models import User
    from moeq.db.repository.users import user_projects
    from moeq.db.store import Store

    store = Store(settings.database_url)
    with store.session() as s:
        for user in s.scalars(select(User).order_by(User.name)):
            print(f"{user.name:<20} {'admin' if user.is_admin else '':<6} {', '.join(user_projects(s, user.name))}")
    return 0
