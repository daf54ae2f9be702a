"""A chunk of experts' part of a scaled-input experts call (Llama 4), for the chunked forward.

Llama 4's MoE block hands its experts module one tensor, `routed_in` [n·T, d]: the batch's T tokens
repeated once per expert, expert e's copy multiplied by e's router score (zero off the top-k); the
module returns [n·T, d], rows e·T..(e+1)·T computed by expert e alone (one batched matmul over the
experts), and the block sums the n blocks itself. Experts [e0, e1) thus own rows e0·T..e1·T of the
call's input and output: the module's forward on exactly those rows, holding exactly those
experts, runs each expert's matmuls on the same [T, d] block as over all experts, so the output
put together chunk by chunk is the whole module's bit for bit (checked on CPU; a GPU's batched
matmul might pick another kernel for another number of experts), and the block's own sum (in the
replay pass) adds the very same tensor. Passes (1)–(3) keep every batch's `routed_in` and output,
n times the batch's hidden states each (the whole-layer forward makes the same two tensors, one
batch at a time).
"""

from __future__ import annotations

import torch
from torch import nn

from moeq.quant_core.streaming.expert_chunks import full_count


@torch.no_grad()
def add_scaled_input_outputs(module: nn.Module, calls: list[tuple[torch.Tensor]], outputs: list[torch.Tensor],
                             e0: int, e1: int) -> None:
    """Write the rows of experts [e0, e1) (held by `module` as 0..e1-e0-1) into each call's output."""
    n = full_count(module)
    for (routed_in,), out in zip(calls, outputs):
        if routed_in.shape[0] % n:
            raise RuntimeError(f"scaled-input experts call of {routed_in.shape[0]} rows is not {n} experts' copies")
        t = routed_in.shape[0] // n
        # `forward`, not the call: hooks on the experts saw the real call in pass (1)
        out[e0 * t:e1 * t] = module.forward(routed_in[e0 * t:e1 * t]).to(out.dtype)


def chunk_adder(expert_call: str):
    """How a chunk adds its experts' part of a recorded experts call, for a family's call convention."""
    from moeq.quant_core.streaming.chunked_forward import add_expert_outputs

    return add_scaled_input_outputs if expert_call == "scaled_input" else add_expert_outputs
