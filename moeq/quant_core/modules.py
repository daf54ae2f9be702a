"""Runtime pieces of a quantized model: activation fake-quant hooks and the quantized experts module.

`QuantExperts` replaces a block's experts module with the same call signature
(hidden_states, top_k_index, top_k_weights) and the *same* parameter objects (so state-dict keys
and the adapters' weight views are unchanged); it adds per-token activation quantization of the
inputs of gate/up and down, and on CUDA may run the mixed-bit fused Triton kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moeq.kernels.act_quant import act_quant
from moeq.kernels.backend import resolve_backend
from moeq.kernels.configs import shape_class
from moeq.kernels.moe_gemm import MixedBitExperts, fused_moe


@dataclass(frozen=True)
class ActQuant:
    """Per-token dynamic activation quantization settings (bits 16 = off)."""

    bits: int = 16
    clip_ratio: float = 0.9
    symmetric: bool = False
    backend: str = "auto"

    @property
    def enabled(self) -> bool:
        return self.bits < 16

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return act_quant(x, self.bits, self.clip_ratio, self.symmetric, backend=self.backend)


def attach_input_fn(module: nn.Module, fn):
    """Apply `fn` to the first input of `module` (positional, else the first keyword) on every call;
    returns the hook handle."""
    def hook(mod, args, kwargs):
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        key = next(iter(kwargs))
        return args, {**kwargs, key: fn(kwargs[key])}
    return module.register_forward_pre_hook(hook, with_kwargs=True)


def attach_input_quant(module: nn.Module, aq: ActQuant):
    """Fake-quantize the first input of `module` on every call; returns the hook handle."""
    return attach_input_fn(module, aq)


def attach_input_transform(module: nn.Module, transform):
    """Apply `transform` (e.g. a DuQuant BlockTransform) to the first input of `module` on every call;
    attach it before any input quantization so quantization sees the transformed input."""
    return attach_input_fn(module, transform)


def kernel_weights(gate_up, down) -> tuple | None:
    """Packed mixed-bit weights for the fused kernel from the two experts' WeightRecords (None when the kernel's
    layout cannot hold them: group sizes must be multiples of 32 or per-channel)."""
    for rec in (gate_up, down):
        g, k = rec.params.group_size, rec.codes.shape[-1]
        if g % 32 and g != k:
            return None

    def one(rec):
        bits = rec.per_matrix_bits().to(torch.int64)
        return MixedBitExperts.from_codes(rec.codes, rec.params.scale, rec.params.zero, bits, rec.params.group_size)
    return one(gate_up), one(down)


class QuantExperts(nn.Module):
    """Drop-in replacement for a transformers fused-experts module with activation quantization."""

    def __init__(self, experts: nn.Module, aq: ActQuant, kernel: tuple | None = None, backend: str = "auto",
                 in_transform=None, down_transforms: list | None = None) -> None:
        super().__init__()
        self.gate_up_proj = experts.gate_up_proj
        self.down_proj = experts.down_proj
        for name in ("gate_up_proj_bias", "down_proj_bias"):
            if getattr(experts, name, None) is not None:
                setattr(self, name, getattr(experts, name))
        self.act_fn = experts.act_fn
        self.num_experts = int(experts.gate_up_proj.shape[0])
        self.is_transposed = bool(getattr(experts, "is_transposed", False))
        self.is_concatenated = bool(getattr(experts, "is_concatenated", True))
        self.has_bias = bool(getattr(experts, "has_bias", False))
        self._gate_fn = getattr(experts, "_apply_gate", None)
        self.aq = aq
        # DuQuant online transforms of the experts' input (shared with the router) and of each
        # expert's down_proj input; the fused kernel cannot apply per-expert transforms
        self.in_transform = in_transform
        self.down_transforms = down_transforms
        # in_transform: one transform for every expert's input, or a list of one per expert (EAQuant)
        per_expert = isinstance(in_transform, (list, tuple))
        self.kernel = kernel if down_transforms is None and not per_expert else None  # (gate_up, down), or None
        self.backend = backend
        self.ran = {"torch": 0, "triton": 0}  # forward calls per backend (reported in the result JSON)
        self.first_expert = 0  # the layer's number of this module's expert 0 (a streamed run's chunk)

    def release_dense(self) -> None:
        """Drop the dequantized expert weights: the packed copy in `kernel` replaces them. Only when every forward
        runs the kernel (backend "triton"); "auto" may still fall back to the torch path."""
        if self.kernel is None or self.backend != "triton":
            raise ValueError("dense expert weights are needed unless every forward runs the kernel "
                             "(MOEQ_KERNELS=triton)")
        for name in ("gate_up_proj", "down_proj"):
            setattr(self, name, nn.Parameter(getattr(self, name).new_empty(0), requires_grad=False))

    @staticmethod
    def kernel_compatible(experts: nn.Module) -> bool:
        """The fused kernel implements SiLU(gate)·up on concatenated, untransposed, bias-free experts."""
        gate = getattr(type(experts), "_apply_gate", None)
        default_gate = gate is None or getattr(gate, "__name__", "") == "_default_apply_gate"
        silu = type(getattr(experts, "act_fn", None)).__name__ in ("SiLU", "SiLUActivation")
        return (silu and default_gate
                and getattr(experts, "is_concatenated", True) and not getattr(experts, "is_transposed", False)
                and not getattr(experts, "has_bias", False))

    def _apply_gate(self, gate_up_out: torch.Tensor) -> torch.Tensor:
        if self._gate_fn is not None:
            return self._gate_fn(gate_up_out)
        gate, up = gate_up_out.chunk(2, dim=-1)
        return self.act_fn(gate) * up

    def _weight(self, name: str, e: int) -> torch.Tensor:
        w = getattr(self, name)[e]
        return w.T if self.is_transposed else w

    def _bias(self, name: str, e: int) -> torch.Tensor | None:
        return getattr(self, f"{name}_bias")[e] if self.has_bias else None

    def prepare(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The experts' input as every expert reads it: the shared transform and quantization applied
        once to all tokens (per-expert transforms are applied per expert in `accumulate`)."""
        if isinstance(self.in_transform, (list, tuple)):
            return hidden_states
        if self.in_transform is not None:
            hidden_states = self.in_transform(hidden_states)
        return self.aq(hidden_states)

    def accumulate(self, x: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor,
                   out: torch.Tensor) -> None:
        """Add to `out` the terms of the experts this module holds — the layer's experts
        `first_expert` .. `first_expert + num_experts - 1` (all of them, or a streamed chunk) — each
        on its routed tokens in the same order, so chunk after chunk adds exactly what one call does."""
        first, k = self.first_expert, top_k_index.shape[1]
        flat = top_k_index.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=first + self.num_experts).tolist()
        token_of, slot_of = order // k, order % k
        start = sum(counts[:first])
        per_expert = isinstance(self.in_transform, (list, tuple))
        for local in range(self.num_experts):
            e = first + local
            c = counts[e]
            if c == 0:
                continue
            tok = token_of[start:start + c]
            slot = slot_of[start:start + c]
            start += c
            xe = self.aq(self.in_transform[e](x[tok])) if per_expert else x[tok]
            h = F.linear(xe, self._weight("gate_up_proj", local), self._bias("gate_up_proj", local))
            a = self._apply_gate(h)
            if self.down_transforms is not None:
                a = self.down_transforms[e](a)
            a = self.aq(a)
            y = F.linear(a, self._weight("down_proj", local), self._bias("down_proj", local))
            y = y * top_k_weights[tok, slot, None].to(y.dtype)
            out.index_add_(0, tok, y.to(out.dtype))

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        x = self.prepare(hidden_states)
        use = "torch"
        if self.kernel is not None and self.first_expert == 0:
            sc = shape_class(x.shape[0], x.shape[1], self.kernel[1].in_features, self.num_experts,
                             top_k_index.shape[1])
            use = resolve_backend(self.backend, x.device, sc)
        self.ran[use] += 1
        if use == "triton":
            if self.kernel[0].device != x.device:  # plain attributes do not follow module.to()
                self.kernel = tuple(k.to(x.device) for k in self.kernel)
            return fused_moe(x, top_k_index, top_k_weights, *self.kernel, backend=self.backend,
                             act_quant=self.aq if self.aq.enabled else None)
        out = torch.zeros_like(x)
        self.accumulate(x, top_k_index, top_k_weights, out)
        return out


def kernel_report(model: nn.Module, requested: str) -> dict:
    """Which backend the MoE experts actually ran: forward calls per backend over all QuantExperts modules."""
    ran = {"torch": 0, "triton": 0}
    for m in model.modules():
        if isinstance(m, QuantExperts):
            for k, v in m.ran.items():
                ran[k] += v
    return {"requested": requested, "moe_forward_calls": ran,
            "moe": "triton" if ran["triton"] and not ran["torch"] else "mixed" if ran["triton"] else "torch"}
