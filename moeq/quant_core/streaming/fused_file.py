"""One layer's fused experts tensors written into a single safetensors file, a chunk of experts at a time.

The file is laid out when the first chunk arrives — its header lists every tensor at its full shape
[n_experts, ...] and its data is allocated — and each chunk's rows e0..e1-1 are then written at
their offsets (the rows of a tensor's first dimension are contiguous), so a layer's experts are
never in memory together and the file is a plain safetensors file once every chunk is in.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from moeq.quant_core.streaming.checkpoint import DTYPES, flush_and_drop

DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class FusedExpertsFile:
    """A safetensors file of fused tensors [n, ...] filled by rows (see module doc)."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], n: int) -> None:
        """Lay out `path` for tensors shaped like `tensors` (one chunk: [c, ...]) but with n rows."""
        self.path, self.n = Path(path), n
        self.layout: dict[str, tuple[torch.dtype, tuple[int, ...], int]] = {}  # name → dtype, row shape, offset
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name in sorted(tensors):
            t = tensors[name]
            if t.dtype not in DTYPE_NAMES or t.dim() == 0:
                raise ValueError(f"fused experts tensor {name} ({t.dtype}, {list(t.shape)}) cannot be written by rows")
            nbytes = n * t[0].numel() * t.element_size()
            header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": [n, *t.shape[1:]],
                            "data_offsets": [offset, offset + nbytes]}
            self.layout[name] = (t.dtype, tuple(t.shape[1:]), offset)
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.base = 8 + len(raw)
        with open(self.path, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            fh.truncate(self.base + offset)

    def write_rows(self, tensors: dict[str, torch.Tensor], e0: int) -> None:
        """Rows e0.. of every tensor of the file (each of `tensors` holds the same rows)."""
        if set(tensors) != set(self.layout):
            raise ValueError(f"fused experts chunk has tensors {sorted(tensors)}, the file {sorted(self.layout)}")
        with open(self.path, "r+b") as fh:
            for name, t in tensors.items():
                dtype, row_shape, offset = self.layout[name]
                if t.dtype != dtype or tuple(t.shape[1:]) != row_shape or not 0 <= e0 < e0 + t.shape[0] <= self.n:
                    raise ValueError(f"fused experts chunk {name} ({t.dtype}, {list(t.shape)}) at row {e0} does not "
                                     f"fit {dtype}[{self.n}, {', '.join(map(str, row_shape))}]")
                data = t.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy()
                fh.seek(self.base + offset + e0 * (data.nbytes // t.shape[0]))
                fh.write(data)
        flush_and_drop(self.path)
