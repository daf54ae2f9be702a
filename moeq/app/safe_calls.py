"""What the web page may pass to the database, and what it may show back: user text (run ids,
search, filters, notes) is checked for NUL bytes and length before any query, and an unexpected
driver or Python error becomes one line (the details go to the server log, never to the page)."""

from __future__ import annotations

import functools
import logging

from moeq.contract.errors import MoeqError

log = logging.getLogger(__name__)
MAX_FIELD = 512  # run ids, filters, search text, tags
MAX_NOTES = 10_000


def check_text(value, what: str, max_len: int = MAX_FIELD) -> None:
    """One-line MoeqError for text a database would choke on (NUL bytes) or that is absurdly long."""
    if value is None:
        return
    if not isinstance(value, str):
        raise MoeqError(f"{what}: expected text")
    if "\x00" in value:
        raise MoeqError(f"{what}: contains a NUL byte")
    if len(value) > max_len:
        raise MoeqError(f"{what}: longer than {max_len} characters")


def one_line_errors(fn):
    """Let MoeqError through (its message is meant for users); log anything else and say one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MoeqError:
            raise
        except Exception:
            log.exception("%s failed", fn.__name__)
            raise MoeqError(f"{fn.__name__}: internal error (details are in the server log)") from None

    return wrapper
