"""MXFP4 source checkpoints (gpt-oss's native format), dequantized per tensor as they are read.

config.json carries `quantization_config = {"quant_method": "mxfp4", ...}`; each quantized expert
weight `W` ([experts, out, in] on disk) is stored as `W_blocks` (uint8 [experts, out, in/32, 16]:
32 FP4 (e2m1) values per block, two per byte, low nibble first) next to `W_scales` (uint8
[experts, out, in/32]: one E8M0 power-of-two exponent per block, bias 127). The real weight is
`fp4 value × 2^(scale − 127)`, exact in any float dtype with 8 exponent bits, laid out as the
model's experts hold it: [experts, in, out] (gpt-oss keeps its fused experts transposed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moeq.contract.errors import ModelError

BLOCKS_SUFFIX = "_blocks"
SCALES_SUFFIX = "_scales"
FP4_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
BLOCK = 32


@dataclass(frozen=True)
class Mxfp4Format:
    @classmethod
    def from_config(cls, config: dict) -> "Mxfp4Format | None":
        qc = config.get("quantization_config")
        return cls() if isinstance(qc, dict) and qc.get("quant_method") == "mxfp4" else None


def dequantize_mxfp4(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype,
                     name: str = "weight") -> torch.Tensor:
    """[..., out, in/32, 16] packed FP4 blocks and [..., out, in/32] exponents → [..., in, out] in `dtype`."""
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise ModelError(f"{name}: MXFP4 blocks and scales must be uint8, got {blocks.dtype} / {scales.dtype}")
    if blocks.dim() < 3 or blocks.shape[-1] != BLOCK // 2 or tuple(blocks.shape[:-1]) != tuple(scales.shape):
        raise ModelError(f"{name}{SCALES_SUFFIX} has shape {list(scales.shape)}; MXFP4 blocks "
                         f"{list(blocks.shape)} need {list(blocks.shape[:-1])} (16 bytes per block of 32)")
    lut = torch.tensor(FP4_E2M1, dtype=torch.float32)
    values = torch.stack((lut[(blocks & 0x0F).long()], lut[(blocks >> 4).long()]), dim=-1)  # [..., G, 16, 2]
    values = values.reshape(*blocks.shape[:-1], BLOCK)
    w = torch.ldexp(values, scales.to(torch.int32)[..., None] - 127)
    return w.reshape(*blocks.shape[:-2], -1).transpose(-2, -1).to(dtype).contiguous()
