"""Cheap, torch-free checks that a checkpoint's safetensors files are whole (header parses, every
tensor's bytes are present), so a truncated download fails in a second with one line instead of a
raw SafetensorError deep inside loading."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from moeq.contract.errors import ModelError
from moeq.contract.safe_open import NotRegularFile, regular_file

MAX_HEADER_BYTES = 100 << 20


def check_safetensors_file(path: Path) -> int:
    """The size of `path` in bytes; ModelError naming it when its header is unreadable or its data is cut
    short."""
    try:  # opened non-blocking and fstat-checked first: a FIFO named model.safetensors never blocks
        with regular_file(path) as (f, st):
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{path} is truncated (no safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER_BYTES, st.st_size - 8):
                raise ModelError(f"{path} is truncated or not a safetensors file (header of {n} bytes)")
            header = json.loads(f.read(n).decode("utf-8"))
    except NotRegularFile:
        raise ModelError(f"{path} is not a regular file (FIFOs, devices and folders are refused)") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelError(f"{path} has a corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path} has a corrupt safetensors header")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ModelError(f"{path} has a corrupt safetensors header (tensor {name!r:.60})")
        end = max(end, offsets[1])
    if st.st_size < 8 + n + end:
        raise ModelError(f"{path} is truncated: {st.st_size} bytes, its header needs {8 + n + end}")
    return st.st_size


def check_checkpoint_files(model_dir: Path) -> int:
    """Check every *.safetensors file of `model_dir` (fast: headers and sizes only); their total bytes."""
    return sum(check_safetensors_file(path) for path in sorted(Path(model_dir).glob("*.safetensors")))
