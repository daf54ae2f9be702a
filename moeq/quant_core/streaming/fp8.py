"""FP8 block-quantized source checkpoints (DeepSeek-V3's native format), dequantized per tensor.

config.json carries `quantization_config = {"quant_method": "fp8", "weight_block_size": [bo, bi], ...}`;
each quantized weight `W` [out, in] is stored as float8 (e4m3) next to `W_scale_inv` (float32,
[ceil(out/bo), ceil(in/bi)]), and the real weight is `W.float() * scale_inv` broadcast over each
bo×bi block, rounded once to the model dtype — the same arithmetic as DeepSeek's reference
`weight_dequant` (fp32 product, one cast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moeq.contract.errors import ModelError

SCALE_SUFFIX = "_scale_inv"
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclass(frozen=True)
class Fp8Format:
    block: tuple[int, int]

    @classmethod
    def from_config(cls, config: dict) -> "Fp8Format | None":
        qc = config.get("quantization_config")
        if not qc:
            return None
        method = qc.get("quant_method")
        if method == "mxfp4":
            return None  # moeq.quant_core.streaming.mxfp4
        if method != "fp8":
            raise ModelError(f"quantization_config.quant_method {method!r} is not supported as a source "
                             "(moeq reads full-precision, FP8 block-quantized or MXFP4 checkpoints)")
        block = qc.get("weight_block_size")
        if not (isinstance(block, (list, tuple)) and len(block) == 2 and all(int(b) > 0 for b in block)):
            raise ModelError(f"quantization_config.weight_block_size must be [rows, cols], got {block!r}")
        return cls((int(block[0]), int(block[1])))


def dequantize_blocks(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
                      dtype: torch.dtype, name: str = "weight") -> torch.Tensor:
    """`weight` (float8, [..., out, in]) times its per-block `scale_inv`, cast once to `dtype`."""
    out_f, in_f = weight.shape[-2:]
    bo, bi = block
    want = (*weight.shape[:-2], -(-out_f // bo), -(-in_f // bi))
    if tuple(scale_inv.shape) != want:
        raise ModelError(f"{name}{SCALE_SUFFIX} has shape {list(scale_inv.shape)}; blocks {bo}x{bi} of "
                         f"{list(weight.shape)} need {list(want)}")
    s = scale_inv.float().repeat_interleave(bo, dim=-2)[..., :out_f, :]
    s = s.repeat_interleave(bi, dim=-1)[..., :in_f]
    return (weight.float() * s).to(dtype)
