"""Open a file that a check reads: non-blocking, and fstat-checked before a byte is read (torch-free).

A FIFO, device or socket named like a data file (`model.safetensors`, `config.json`, a calibration
text) must be refused at once, not block the check until someone opens the other end. So every
check opens with O_NONBLOCK (an open of a FIFO never waits for a writer), asks `fstat` on the open
descriptor what it got, and reads only a regular file. `follow=False` adds O_NOFOLLOW: the final
path component must not be a symlink (for paths already resolved by a confinement check; model
folders keep following symlinks, as the Hugging Face cache is built of them).
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


class NotRegularFile(OSError):
    """The path opened is a FIFO, device, socket or folder."""


def open_regular(path: str | Path, *, follow: bool = True) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file `path` and its fstat; NotRegularFile or OSError otherwise.
    The caller closes the descriptor."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


@contextmanager
def regular_file(path: str | Path, *, follow: bool = True) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """`open_regular` as a binary file object (closed on exit) and its fstat."""
    fd, st = open_regular(path, follow=follow)
    with os.fdopen(fd, "rb") as f:
        yield f, st


class TooLarge(OSError):
    """The file is larger than the caller reads."""


def read_limited(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them: a FIFO or device is refused
    without blocking, a larger file (by fstat, and by what is actually read) with TooLarge."""
    with regular_file(path) as (f, st):
        if st.st_size > limit:
            raise TooLarge(f"{path} is {st.st_size} bytes; at most {limit} are read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{path} is larger than {limit} bytes")
    return data
