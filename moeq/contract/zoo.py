"""Built-in models: trained testbeds and random-init tiny checkpoints of every family (torch-free listing)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: Literal["testbed", "tiny", "derived"]
    family: str
    description: str


_ENTRIES = (
    ZooEntry("testbed-mixtral", "testbed", "mixtral",
             "trained Mixtral-style MoE (8 experts, top-2) on the generated multi-domain corpus"),
    ZooEntry("testbed-shared", "testbed", "qwen2_moe",
             "trained Qwen2-MoE-style model with a gated shared expert on the generated corpus"),
    ZooEntry("testbed-outliers", "derived", "mixtral",
             "testbed-mixtral fine-tuned to carry a massive residual channel "
             "(activation outliers that survive norm folding)"),
    ZooEntry("tiny-mixtral", "tiny", "mixtral", "random-init Mixtral (structure tests)"),
    ZooEntry("tiny-qwen2_moe", "tiny", "qwen2_moe", "random-init Qwen2-MoE with shared expert"),
    ZooEntry("tiny-qwen3_moe", "tiny", "qwen3_moe", "random-init Qwen3-MoE"),
    ZooEntry("tiny-olmoe", "tiny", "olmoe", "random-init OLMoE"),
    ZooEntry("tiny-deepseek_v2", "tiny", "deepseek_v2", "random-init DeepSeek-V2 (MLA, shared experts, dense first layer)"),
    ZooEntry("tiny-deepseek_v3", "tiny", "deepseek_v3",
             "random-init DeepSeek-V3 (MLA, shared experts, dense first layer, grouped biased routing)"),
)

# families described from transformers' modeling files (issue 27): random-init structure checkpoints
_MORE_TINY = {
    "gpt_oss": "expert biases, clamped SwiGLU, router bias", "glm4_moe": "grouped sigmoid routing, shared experts",
    "dots1": "grouped sigmoid routing, shared experts", "deepseek_v32": "MLA + indexer, grouped sigmoid routing",
    "qwen3_next": "hybrid linear attention, gated shared expert", "qwen3_5_moe": "Qwen3.5-MoE text model, hybrid",
    "minimax_m2": "sigmoid routing with a block-level bias", "granitemoe": "Granite parallel experts",
    "phimoe": "sparsemixer routing", "llama4": "Llama 4 text: scores scale the expert input, interleaved layers", "ernie4_5_moe": "softmax + correction bias, shared experts",
    "hunyuan_v1_moe": "shared MLP, router at gate.wg", "flex_olmo": "OLMoE routing with post-norms",
    "granitemoeshared": "Granite experts + a layer-level shared MLP",
    "granitemoe_swa": "Granite shared MLP, sliding-window attention with sinks",
    "granitemoehybrid": "Granite shared MLP, Mamba2 + attention layers",
    "jetmoe": "parallel-expert MLP and mixture-of-attention heads",
    "solar_open": "not described: found from the model", "cohere2_moe": "not described: found from the model",
}
_ENTRIES = (*_ENTRIES, *(ZooEntry(f"tiny-{f}", "tiny", f, f"random-init {f} ({d})") for f, d in _MORE_TINY.items()))

ZOO: MappingProxyType = MappingProxyType({e.name: e for e in _ENTRIES})


def is_zoo_name(ref: str) -> bool:
    return ref in ZOO


def zoo_path(name: str, zoo_dir: Path) -> Path:
    """Where a built zoo model lives (it may not be built yet)."""
    return Path(zoo_dir) / name
