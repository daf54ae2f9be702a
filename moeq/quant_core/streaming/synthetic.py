"""Generate a random-weight, Mixtral-shaped sharded checkpoint of any size without holding it in memory.

Tensors are written layer by layer under Mixtral's on-disk names (per-expert w1/w2/w3), one shard
per `layers_per_shard` layers, with the index, config and the zoo's character tokenizer — a real
checkpoint transformers loads, for tests and the scale benchmark. Deterministic from `seed`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from moeq.quant_core.streaming.checkpoint import INDEX_FILE


@dataclass(frozen=True)
class SyntheticSpec:
    hidden: int = 256
    intermediate: int = 1024
    layers: int = 8
    experts: int = 8
    top_k: int = 2
    heads: int = 4
    kv_heads: int = 2
    dtype: str = "float32"
    layers_per_shard: int = 1
    std: float = 0.02

    @property
    def params_per_layer(self) -> int:
        d, i, e, hd = self.hidden, self.intermediate, self.experts, self.hidden // self.heads
        attn = 2 * d * d + 2 * d * self.kv_heads * hd
        return attn + e * 3 * d * i + e * d + 2 * d

    def config(self, vocab: int, special: dict) -> dict:
        return {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "vocab_size": vocab,
                "hidden_size": self.hidden, "intermediate_size": self.intermediate,
                "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "num_local_experts": self.experts,
                "num_experts_per_tok": self.top_k, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0, "tie_word_embeddings": False, "dtype": self.dtype, **special}


def _layer_tensors(spec: SyntheticSpec, i: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    d, inter, hd = spec.hidden, spec.intermediate, spec.hidden // spec.heads
    dtype = getattr(torch, spec.dtype)

    def rnd(*shape):
        return (torch.randn(*shape, generator=gen) * spec.std).to(dtype)

    p = f"model.layers.{i}."
    out = {p + "input_layernorm.weight": (1 + 0.1 * torch.randn(d, generator=gen)).to(dtype),
           p + "post_attention_layernorm.weight": (1 + 0.1 * torch.randn(d, generator=gen)).to(dtype),
           p + "self_attn.q_proj.weight": rnd(d, d), p + "self_attn.k_proj.weight": rnd(spec.kv_heads * hd, d),
           p + "self_attn.v_proj.weight": rnd(spec.kv_heads * hd, d), p + "self_attn.o_proj.weight": rnd(d, d),
           p + "block_sparse_moe.gate.weight": rnd(spec.experts, d) * 10}
    for e in range(spec.experts):
        q = f"{p}block_sparse_moe.experts.{e}."
        out.update({q + "w1.weight": rnd(inter, d), q + "w3.weight": rnd(inter, d), q + "w2.weight": rnd(d, inter)})
    return out


def write_synthetic(out_dir: Path, spec: SyntheticSpec, seed: int = 0) -> Path:
    from moeq.quant_core.zoo.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    vocab = len(tokenizer)
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, spec.dtype)
    weight_map, shard, names = {}, {}, []
    n_shards = -(-spec.layers // spec.layers_per_shard) + 1

    def flush(tensors: dict) -> None:
        name = f"model-{len(names) + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        names.append(name)

    for i in range(spec.layers):
        shard.update(_layer_tensors(spec, i, gen))
        if (i + 1) % spec.layers_per_shard == 0 or i + 1 == spec.layers:
            flush(shard)
            shard = {}
    flush({"model.embed_tokens.weight": (torch.randn(vocab, spec.hidden, generator=gen)).to(dtype),
           "model.norm.weight": torch.ones(spec.hidden, dtype=dtype),
           "lm_head.weight": (torch.randn(vocab, spec.hidden, generator=gen) * spec.std).to(dtype)})
    total = sum((out_dir / n).stat().st_size for n in names)
    (out_dir / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    special = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
    (out_dir / "config.json").write_text(json.dumps(spec.config(vocab, special), indent=1))
    tokenizer.save_pretrained(out_dir)
    return out_dir
