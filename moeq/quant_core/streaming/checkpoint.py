"""A (sharded) safetensors checkpoint read one tensor at a time, checked whole before any work.

`Checkpoint.open(dir)` reads `model.safetensors.index.json` (or the single `model.safetensors`),
parses every shard's header and checks that the shard exists, that the header is well formed, that
every tensor's byte range matches its dtype and shape and lies inside the file, and that the file
is exactly as long as its header says; any problem is one `ModelError` line naming the shard.
Tensors are then read with plain `readinto` into fresh tensors (no memory map), so a caller holds
exactly the tensors it asked for — or just rows [r0, r1) of the first dimension (one chunk of a
fused experts tensor), whose bytes are contiguous on disk. FP8 block-quantized sources are
dequantized by `fp8.py` on read.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from moeq.contract.errors import ModelError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_HEADER_BYTES = 100 * 2**20

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorEntry:
    shard: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the shard file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def _shard_header(path: Path, name: str) -> dict[str, TensorEntry]:
    """Entries of one shard, after checking it is complete; errors name the shard."""
    if not path.is_file():
        raise ModelError(f"checkpoint shard {name} is missing")
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelError(f"checkpoint shard {name} is truncated ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise ModelError(f"checkpoint shard {name} is truncated or corrupt (header of {n} bytes, file "
                                 f"of {size} bytes)")
            header = json.loads(fh.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"checkpoint shard {name} has an unreadable header: {exc}") from None
    header.pop("__metadata__", None)
    base, end_max, out = 8 + n, 0, {}
    for key, info in header.items():
        try:
            dtype, shape, (lo, hi) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"checkpoint shard {name}: malformed header entry for {key}") from None
        if dtype not in DTYPES:
            raise ModelError(f"checkpoint shard {name}: tensor {key} has unsupported dtype {dtype}")
        numel = 1
        for s in shape:
            numel *= s
        if hi - lo != numel * DTYPES[dtype].itemsize or lo < 0:
            raise ModelError(f"checkpoint shard {name}: tensor {key} byte range does not match {dtype}{list(shape)}")
        end_max = max(end_max, hi)
        out[key] = TensorEntry(name, dtype, shape, base + lo, base + hi)
    if base + end_max != size:
        raise ModelError(f"checkpoint shard {name} is truncated or has trailing bytes ({size} bytes on disk, "
                         f"header describes {base + end_max})")
    return out


class Checkpoint:
    """The tensors of one checkpoint directory, by name, read on demand."""

    def __init__(self, model_dir: Path, entries: dict[str, TensorEntry], shards: tuple[str, ...]) -> None:
        self.dir = Path(model_dir)
        self.entries = entries
        self.shards = shards

    @classmethod
    def open(cls, model_dir: Path) -> "Checkpoint":
        model_dir = Path(model_dir)
        index = model_dir / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ModelError(f"checkpoint index {INDEX_FILE} is unreadable: {exc}") from None
            shards = tuple(sorted(set(weight_map.values())))
        elif (model_dir / SINGLE_FILE).is_file():
            weight_map, shards = None, (SINGLE_FILE,)
        else:
            raise ModelError(f"{model_dir} has neither {INDEX_FILE} nor {SINGLE_FILE}; not a safetensors checkpoint")
        entries: dict[str, TensorEntry] = {}
        for shard in shards:
            if Path(shard).name != shard:
                raise ModelError(f"checkpoint index names shard {shard!r} outside the model directory")
            entries.update(_shard_header(model_dir / shard, shard))
        if weight_map is not None:
            for key, shard in weight_map.items():
                if key not in entries or entries[key].shard != shard:
                    raise ModelError(f"checkpoint shard {shard} does not contain tensor {key} listed in {INDEX_FILE}")
        return cls(model_dir, entries, shards)

    @classmethod
    def of_shards(cls, model_dir: Path, shards: list[str]) -> "Checkpoint":
        """The tensors of just these shard files of `model_dir` (no index needed)."""
        entries: dict[str, TensorEntry] = {}
        for shard in shards:
            entries.update(_shard_header(Path(model_dir) / shard, shard))
        return cls(Path(model_dir), entries, tuple(shards))

    @property
    def total_bytes(self) -> int:
        return sum((self.dir / s).stat().st_size for s in self.shards)

    def names(self) -> list[str]:
        return list(self.entries)

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The stored tensor `name` exactly as on disk (dtype and shape), in a fresh CPU tensor; with
        `rows` = (r0, r1), only rows r0..r1-1 of its first dimension (only their bytes are read)."""
        e = self.entries.get(name)
        if e is None:
            raise ModelError(f"checkpoint has no tensor {name}")
        start, nbytes, shape = e.start, e.nbytes, e.shape
        if rows is not None:
            r0, r1 = rows
            if not e.shape or not 0 <= r0 < r1 <= e.shape[0]:
                raise ModelError(f"checkpoint tensor {name} of shape {list(e.shape)} has no rows {r0}-{r1 - 1}")
            row = e.nbytes // e.shape[0]
            start, nbytes, shape = e.start + r0 * row, (r1 - r0) * row, (r1 - r0, *e.shape[1:])
        buf = torch.empty(nbytes, dtype=torch.uint8)
        with open(self.dir / e.shard, "rb", buffering=0) as fh:
            fh.seek(start)
            view, got = memoryview(buf.numpy()), 0
            while got < nbytes:
                n = fh.readinto(view[got:])
                if not n:
                    raise ModelError(f"checkpoint shard {e.shard} ended while reading {name}")
                got += n
            drop_cached(fh.fileno(), start, nbytes)
        if e.dtype == "BOOL":
            return buf.view(torch.bool).reshape(shape)
        return buf.view(DTYPES[e.dtype]).reshape(shape)



def drop_cached(fd: int, offset: int = 0, length: int = 0) -> None:
    """Tell the kernel these bytes will not be needed soon: a streamed run reads (and writes) each
    layer once per pass, and keeping them cached would only crowd the memory the run is allowed."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        try:
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def flush_and_drop(path) -> None:
    """Write a just-saved file through to disk and drop it from the page cache (dirty pages count
    against a memory cgroup and cannot be reclaimed until written)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        drop_cached(fd)
    finally:
        os.close(fd)
