"""One decoder layer run over many batches with its routed experts loaded a chunk at a time.

Three passes, each the layer's own forward: (1) every batch runs up to its experts call, which is
recorded (the hidden states, the routing indices and weights the block hands its experts, and
the router's output) and ends the pass; (2) chunk by chunk, each loaded chunk's experts add their contributions to every
recorded call's output, expert by expert in ascending order, each expert called (through the
experts module's own forward) on exactly the tokens routed to it in the order the module's eager
loop takes them — so each output is accumulated by the same `index_add_` sequence as the module's
forward over all experts, and equals it bit for bit; (3) every batch runs through the whole layer
with the router and experts calls answered from (1) and (2) (the experts' input is checked to be
the recorded one), so hooks on the router or the experts module see one call per batch, as in
an ordinary forward.
The layer's working set is its non-expert part, one chunk of experts and two copies of the
experts' input per batch; the routing is kept as indices, never as per-expert copies of tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from moeq.quant_core.adapters.model import expert_call_args, get_path, set_path
from moeq.quant_core.algorithms.capture import LayerBatch, _run_until_stop, _Stop, run_layer

Call = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # hidden [T, d], top-k index [T, k], weights [T, k]


class _Replayer(nn.Module):
    """Answers the i-th call with the i-th recorded output (a router's, or the experts' accumulated
    one, whose input is checked to be the recorded call's)."""

    def __init__(self, outputs: list, inputs: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.outputs, self.inputs, self.next = outputs, inputs, 0

    def forward(self, *args, **kwargs):
        j, self.next = self.next, self.next + 1
        if j >= len(self.outputs) or (self.inputs is not None
                                      and not torch.equal(expert_call_args(args, kwargs)[0], self.inputs[j])):
            raise RuntimeError("chunked experts: the layer's experts input differs between passes")
        return self.outputs[j]


@torch.no_grad()
def add_expert_outputs(module: nn.Module, calls: list[Call], outputs: list[torch.Tensor], e0: int, e1: int) -> None:
    """Add the contributions of experts [e0, e1) (held by `module` as 0..e1-e0-1) to `outputs`."""
    if hasattr(module, "accumulate"):  # moeq's QuantExperts: its own per-expert loop, chunk-aware
        for (hidden, index, weights), out in zip(calls, outputs):
            module.accumulate(module.prepare(hidden), index, weights, out)
        return
    for (hidden, index, weights), out in zip(calls, outputs):
        for e in range(e0, e1):
            pos, tok = torch.where((index == e).T)  # by slot, then token: the eager loop's order
            if not tok.numel():
                continue
            local = torch.full((tok.numel(), 1), e - e0, dtype=index.dtype, device=index.device)
            # zeros + this expert's term; `forward`, not the call: hooks saw the real call in pass (1)
            y = module.forward(hidden[tok], local, weights[tok, pos].unsqueeze(1))
            out.index_add_(0, tok, y.to(out.dtype))


def _kept(out):
    """A router output as recorded: tensors cloned (the block may scale them in place; pass 3 must
    hand it the very values pass 1 saw)."""
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_kept(o) for o in out)
    return out


@torch.no_grad()
def record_expert_calls(layer: nn.Module, router: nn.Module, experts: nn.Module,
                        batches: list[LayerBatch]) -> tuple[list[Call], list]:
    """Pass (1): every batch's experts call and router output; the pass ends at the experts call.
    Hooks already on the router and the experts module see this pass as a normal forward (they run
    before the recording hooks, registered last)."""
    calls, routed = [], []

    def on_experts(module, args, kwargs):
        calls.append(tuple(t.detach() for t in expert_call_args(args, kwargs)))
        raise _Stop

    handles = [router.register_forward_hook(lambda module, args, out: routed.append(_kept(out))),
               experts.register_forward_pre_hook(on_experts, with_kwargs=True)]
    try:
        _run_until_stop(layer, batches)
    finally:
        for h in handles:
            h.remove()
    if len(calls) != len(batches) or len(routed) != len(batches):
        raise RuntimeError(f"chunked experts: {len(calls)} experts calls and {len(routed)} router calls for "
                           f"{len(batches)} batches")
    return calls, routed


@torch.no_grad()
def replay_layer(layer: nn.Module, block: nn.Module, router_path: str, experts_path: str,
                 batches: list[LayerBatch], calls: list[Call], routed: list, outputs: list[torch.Tensor]
                 ) -> list[LayerBatch]:
    """Pass (3): the layer's outputs, its router and experts calls answered from passes (1) and (2)
    (neither real module runs again, so hooks on them see each batch once)."""
    router, experts = get_path(block, router_path), get_path(block, experts_path)
    set_path(block, router_path, _Replayer(routed))
    set_path(block, experts_path, _Replayer(outputs, [c[0] for c in calls]))
    try:
        return run_layer(layer, batches)
    finally:
        set_path(block, router_path, router)
        set_path(block, experts_path, experts)


@torch.no_grad()
def run_layer_chunked(layer: nn.Module, block: nn.Module, router_path: str, experts_path: str,
                      batches: list[LayerBatch], chunks: list[tuple[int, int]], load: Callable[[int, int], nn.Module],
                      release: Callable[[], None], add: Callable = add_expert_outputs) -> list[LayerBatch]:
    """`run_layer` with the experts (`block.<experts_path>`) loaded chunk by chunk by `load(e0, e1)`;
    `add` adds a chunk's contributions (`add_expert_outputs`, or the scaled-input convention's)."""
    if not batches:
        return []
    calls, routed = record_expert_calls(layer, get_path(block, router_path), get_path(block, experts_path), batches)
    outputs = [torch.zeros_like(call[0]) for call in calls]  # the experts' output is shaped as their input
    for e0, e1 in chunks:
        module = load(e0, e1)
        try:
            add(module, calls, outputs, e0, e1)
        finally:
            del module
            release()
    return replay_layer(layer, block, router_path, experts_path, batches, calls, routed, outputs)
