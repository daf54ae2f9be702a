"""`moeq` command line: parses arguments, loads settings once, dispatches to a subcommand module.

Errors the user can fix (MoeqError) print as one line `moeq: error: ...` and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from app.commands import COMMANDS
from quant_core.errors import MoeqError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moeq", description="Post-training quantization workbench for MoE models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"app.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # the CLI owns the process: keep transformers' download/shard progress bars off our stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from jobs.settings import load_settings

    try:
        settings = load_settings()
        return int(args.handler(args, settings) or 0)
    except MoeqError as exc:
        print(f"moeq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moeq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
