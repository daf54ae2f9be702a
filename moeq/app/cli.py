"""`moeq` command line: parses arguments, loads settings once, dispatches to a subcommand module.

Errors the user can fix (MoeqError) print as one line `moeq: error: ...` and exit with status 2.
`-v/--verbose` and `-q/--quiet` are accepted anywhere on the line (before or after the subcommand).
A closed output pipe (`moeq runs show ID | head -1`) ends quietly with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from moeq.app.commands import COMMANDS
from moeq.contract.errors import MoeqError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moeq", description="Post-training quantization workbench for MoE models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr (anywhere on the line)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"moeq.app.commands.{name}").register(sub)
    return parser


GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


def split_global_flags(argv: list[str]) -> tuple[list[str], set[str]]:
    """Take -v/--verbose/-q/--quiet out of `argv` wherever they stand (up to a `--`)."""
    rest, flags = [], set()
    for i, a in enumerate(argv):
        if a == "--":
            return rest + argv[i:], flags
        if a in GLOBAL_FLAGS:
            flags.add(GLOBAL_FLAGS[a])
        else:
            rest.append(a)
    return rest, flags


def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop writing, and keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    # the CLI owns the process: keep transformers' download/shard progress bars off our stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    rest, flags = split_global_flags(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(rest)
    args.verbose = args.verbose or "verbose" in flags
    args.quiet = args.quiet or "quiet" in flags
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # plugin discovery chatter is not progress
    from moeq.jobs.private_paths import check_home
    from moeq.jobs.settings import load_settings

    try:
        settings = load_settings()
        check_home(settings.home)  # before any command reads or writes there
        rc = int(args.handler(args, settings) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except MoeqError as exc:
        print(f"moeq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where a command turns it into one (moeq run)
        name = getattr(exc, "signal_name", "")
        print(f"moeq: interrupted{f' ({name})' if name else ''}", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130


if __name__ == "__main__":
    sys.exit(main())
