"""Running one decoder layer over calibration batches, and hooks that collect what quantizers need."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from moeq.quant_core.adapters.model import MoEModel, get_path


class _Stop(Exception):
    """Raised inside a hook to end a forward pass early (inputs captured)."""


@dataclass
class LayerBatch:
    hidden: torch.Tensor  # [B, S, d]
    kwargs: dict  # the layer's keyword arguments (position embeddings, mask, ...)
    # per decoder layer, when the model gives its layers different keyword arguments (sliding / full /
    # linear attention masks); `layer` is the index of the layer this batch enters
    by_layer: list[dict] | None = None
    layer: int = 0

    def next(self, hidden: torch.Tensor) -> "LayerBatch":
        """The batch entering the following layer, holding that layer's keyword arguments."""
        i = self.layer + 1
        kwargs = self.by_layer[i] if self.by_layer is not None and i < len(self.by_layer) else self.kwargs
        return LayerBatch(hidden, kwargs, self.by_layer, i)


_DROPPED_KWARGS = ("hidden_states", "past_key_values", "use_cache")


def _kept(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in _DROPPED_KWARGS}


class _KwargsProbe(nn.Module):
    """Stands in for a decoder layer during one embedding pass: keeps what the model hands the layer
    (its plain attributes, such as the attention type the model reads, are copied)."""

    def __init__(self, layer: nn.Module, last: bool) -> None:
        super().__init__()
        for k, v in vars(layer).items():
            if not k.startswith("_") and k != "training" and not isinstance(v, (nn.Module, torch.Tensor)):
                setattr(self, k, v)
        self.last = last
        self.seen: list[tuple[torch.Tensor, dict]] = []

    def forward(self, *args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        self.seen.append((hidden.detach(), _kept(kwargs)))
        if self.last:
            raise _Stop
        return hidden


def _embed_batches(moe: MoEModel, windows: torch.Tensor, batch_size: int, device: torch.device) -> None:
    """Run the model on each batch of windows until a hook or probe stops it with _Stop."""
    for b0 in range(0, windows.shape[0], batch_size):
        try:
            moe.model(input_ids=windows[b0:b0 + batch_size].to(device), use_cache=False)
        except _Stop:
            pass


def _layers_differ(moe: MoEModel) -> bool:
    types = getattr(moe.config, "layer_types", None)
    return isinstance(types, (list, tuple)) and len(set(types)) > 1


def _capture_by_layer(moe: MoEModel, windows: torch.Tensor, batch_size: int,
                      device: torch.device) -> list[LayerBatch]:
    """Layer-0 inputs plus every layer's keyword arguments, from one pass with the decoder layers
    stood in for by probes (the real layers are put back before returning)."""
    container = get_path(moe.model, moe.spec.layers)
    real = list(container)
    probes = [_KwargsProbe(layer, last=i == len(real) - 1) for i, layer in enumerate(real)]
    try:
        for i, probe in enumerate(probes):
            container[i] = probe
        _embed_batches(moe, windows, batch_size, device)
    finally:
        for i, layer in enumerate(real):
            container[i] = layer
    batches = []
    for j, (hidden, kwargs) in enumerate(probes[0].seen):
        by_layer = [p.seen[j][1] for p in probes]
        batches.append(LayerBatch(hidden, kwargs, by_layer, 0))
    return batches


@torch.no_grad()
def capture_first_layer_inputs(moe: MoEModel, windows: torch.Tensor, batch_size: int,
                               device: torch.device) -> list[LayerBatch]:
    """Inputs of decoder layer 0 for each batch of token windows (embeddings, rotary, masks); with
    every layer's own keyword arguments when the model's layers differ (config.layer_types)."""
    if _layers_differ(moe):
        return _capture_by_layer(moe, windows, batch_size, device)
    batches: list[LayerBatch] = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        batches.append(LayerBatch(hidden.detach(), _kept(kwargs)))
        raise _Stop

    handle = moe.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        _embed_batches(moe, windows, batch_size, device)
    finally:
        handle.remove()
    return batches


def _run_until_stop(layer: nn.Module, batches: list[LayerBatch]) -> None:
    """Run `layer` on every batch; a hook may end each pass early by raising _Stop."""
    for b in batches:
        try:
            layer(b.hidden, **b.kwargs)
        except _Stop:
            pass


def _layer_out(out):
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_layer(layer: nn.Module, batches: list[LayerBatch]) -> list[LayerBatch]:
    """Outputs of `layer` for every batch, as the next layer's inputs."""
    return [b.next(_layer_out(layer(b.hidden, **b.kwargs))) for b in batches]


@torch.no_grad()
def _one_row(value, rows: int):
    """`value` (a layer keyword argument) for the first sequence of a batch of `rows`: tensors of two or
    more dimensions with `rows` leading rows are cut to one; tuples and lists item by item."""
    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == rows:
        return value[:1]
    if isinstance(value, (tuple, list)):
        return type(value)(_one_row(v, rows) for v in value)
    return value


def mean_batch(batches: list[LayerBatch]) -> LayerBatch:
    """One sequence: the mean over every sequence of `batches` of the layer's inputs (EAQuant's stage-1
    calibration input, `rotate_inps`)."""
    hidden = torch.cat([b.hidden.float() for b in batches]).mean(0, keepdim=True).to(batches[0].hidden.dtype)
    rows = batches[0].hidden.shape[0]
    return LayerBatch(hidden, {k: _one_row(v, rows) for k, v in batches[0].kwargs.items()})


def capture_module_input(layer: nn.Module, path: str, batches: list[LayerBatch]) -> torch.Tensor:
    """Flattened [T, d] input of sub-module `path` of `layer` (the pass stops right there)."""
    module = get_path(layer, path)
    grabbed: list[torch.Tensor] = []

    def hook(mod, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()))
        grabbed.append(x.detach().reshape(-1, x.shape[-1]))
        raise _Stop

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        _run_until_stop(layer, batches)
    finally:
        handle.remove()
    return torch.cat(grabbed)


def batch_moments(x: torch.Tensor, want_hessian: bool) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(per-channel |x| max, Σ x xᵀ or None, token count) of one batch of inputs [..., d]."""
    x = x.reshape(-1, x.shape[-1]).float()
    return x.abs().amax(dim=0), (x.T @ x) if want_hessian else None, x.shape[0]


@dataclass
class InputStats:
    """Streaming per-linear input statistics: Hessian sum (optional) and per-channel |x| max."""

    hessian: torch.Tensor | None = None
    absmax: torch.Tensor | None = None
    count: int = 0

    def update(self, x: torch.Tensor, want_hessian: bool) -> None:
        self.add(*batch_moments(x, want_hessian))

    def add(self, amax: torch.Tensor, h: torch.Tensor | None, n: int) -> None:
        """Fold in one batch's moments (from `batch_moments`; never aliased: readers share them)."""
        self.absmax = amax.clone() if self.absmax is None else torch.maximum(self.absmax, amax)
        if h is not None:
            self.hessian = h.clone() if self.hessian is None else self.hessian + h
        self.count += n

    def H(self) -> torch.Tensor:
        """2/N · Σ x xᵀ."""
        return 2.0 * self.hessian / max(1, self.count)


@dataclass
class LinearInputCollector:
    """Context manager: pre-hooks on the given linears, accumulating InputStats per key."""

    linears: dict[str, nn.Module]
    want_hessian: bool = True
    stats: dict[str, InputStats] = field(default_factory=dict)
    _handles: list = field(default_factory=list)
    _last: tuple | None = None  # (input tensor, its moments): the last input seen, shared by readers

    def __enter__(self) -> "LinearInputCollector":
        for key, mod in self.linears.items():
            self.stats[key] = InputStats()

            def hook(m, args, key=key):
                self.stats[key].add(*self._moments(args[0]))
            self._handles.append(mod.register_forward_pre_hook(hook))
        return self

    def _moments(self, x: torch.Tensor) -> tuple:
        """Moments of `x`, computed once when several linears read the same tensor (q/k/v)."""
        if self._last is None or self._last[0] is not x:
            self._last = (x, batch_moments(x.detach(), self.want_hessian))
        return self._last[1]

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._last = None


@torch.no_grad()
def collect_linear_inputs(layer: nn.Module, linears: dict[str, nn.Module], batches: list[LayerBatch],
                          want_hessian: bool = True, stop_at: str | None = None) -> dict[str, InputStats]:
    """One pass of `layer` collecting InputStats for `linears`; ends early at sub-module `stop_at`."""
    with stop_before(layer, stop_at), LinearInputCollector(linears, want_hessian) as col:
        _run_until_stop(layer, batches)
    return col.stats


@contextmanager
def stop_before(layer: nn.Module, path: str | None):
    """Within the block, every pass of `layer` ends where sub-module `path` would run (None: never)."""
    if path is None:
        yield
        return

    def stop(mod, args):
        raise _Stop
    handle = get_path(layer, path).register_forward_pre_hook(stop)
    try:
        yield
    finally:
        handle.remove()
