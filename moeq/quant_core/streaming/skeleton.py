"""A model skeleton without weights whose decoder layers are filled from a checkpoint one at a time.

The model is built on the meta device from its config; the modules outside the decoder layers
(embeddings, final norm, head, rotary tables) are loaded once and kept; each layer's tensors are
read when `load_layer` is called — through transformers' own key conversion, so per-expert
("unfused") and fused on-disk layouts both land in the fused in-memory parameters — and
`release_layer` returns the layer to the meta device. FP8 block-quantized and MXFP4 sources are
dequantized tensor by tensor as they are read (or a range of experts of a fused tensor at a time).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.contract.errors import ModelError
from moeq.quant_core.memory import return_freed_memory
from moeq.quant_core.streaming.checkpoint import Checkpoint
from moeq.quant_core.streaming.fp8 import FP8_DTYPES, SCALE_SUFFIX, Fp8Format, dequantize_blocks
from moeq.quant_core.streaming.mxfp4 import BLOCKS_SUFFIX, SCALES_SUFFIX, Mxfp4Format, dequantize_mxfp4

log = logging.getLogger(__name__)


class LayerSource:
    """A checkpoint whose tensors are grouped by decoder layer (index i) and 'outer' (everything else)."""

    def __init__(self, ckpt: Checkpoint, num_layers: int, fp8: Fp8Format | None, dtype: torch.dtype,
                 mxfp4: Mxfp4Format | None = None) -> None:
        self.ckpt, self.fp8, self.dtype, self.mxfp4 = ckpt, fp8, dtype, mxfp4
        self.layers: dict[int, list[str]] = {i: [] for i in range(num_layers)}
        self.outer: list[str] = []
        pattern = re.compile(r"(?:^|\.)layers\.(\d+)\.")
        for name in ckpt.names():
            if name.endswith(SCALE_SUFFIX) or (mxfp4 is not None and name.endswith(SCALES_SUFFIX)):
                continue
            m = pattern.search(name)
            if m is None:
                self.outer.append(name)
            elif int(m.group(1)) in self.layers:
                self.layers[int(m.group(1))].append(name)
            else:
                log.info("ignoring checkpoint tensor %s (layer beyond num_hidden_layers)", name)

    def read(self, names: list[str], rows: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """The tensors `names`, dequantized; with `rows`, only those rows of their first dimension
        (experts [e0, e1) of fused experts tensors: their FP8 or MXFP4 scales are sliced alike)."""
        out = {}
        for name in names:
            t = self.ckpt.read(name, rows)
            if t.dtype in FP8_DTYPES:
                if self.fp8 is None:
                    raise ModelError(f"tensor {name} is stored as {t.dtype} but config.json has no FP8 "
                                     "quantization_config")
                scale = name + SCALE_SUFFIX
                if scale not in self.ckpt.entries:
                    raise ModelError(f"FP8 tensor {name} has no {scale} in the checkpoint")
                t = dequantize_blocks(t, self.ckpt.read(scale, rows), self.fp8.block, self.dtype, name)
            elif self.mxfp4 is not None and name.endswith(BLOCKS_SUFFIX):
                scales = name[:-len(BLOCKS_SUFFIX)] + SCALES_SUFFIX
                if scales not in self.ckpt.entries:
                    raise ModelError(f"MXFP4 tensor {name} has no {scales} in the checkpoint")
                t = dequantize_mxfp4(t, self.ckpt.read(scales, rows), self.dtype, name)
                name = name[:-len(BLOCKS_SUFFIX)]
            out[name] = t
        return out


def _build_meta_model(config, allow_remote_code: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=config.dtype or torch.float32,
                                                 trust_remote_code=allow_remote_code)
    model.eval()
    model.requires_grad_(False)
    return model


class SkeletonModel:
    """Meta-device model + loaders; `moe` is the adapter view the quantizer and evaluators use."""

    def __init__(self, model_dir: Path, allow_remote_code: bool = False, eager_experts: bool = True) -> None:
        from transformers import AutoConfig
        from transformers.conversion_mapping import get_model_conversion_mapping

        from moeq.contract.describe import read_config

        self.model_dir = Path(model_dir)
        raw = read_config(self.model_dir)
        fp8 = Fp8Format.from_config(raw)
        mxfp4 = Mxfp4Format.from_config(raw)
        ckpt = Checkpoint.open(self.model_dir)  # every shard checked before any work
        config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=allow_remote_code)
        if (fp8 is not None or mxfp4 is not None) and hasattr(config, "quantization_config"):
            del config.quantization_config  # the skeleton holds dequantized weights
        self.model = _build_meta_model(config, allow_remote_code)
        if eager_experts and hasattr(self.model, "set_experts_implementation"):
            self.model.set_experts_implementation("eager")
        self.dtype = self.model.dtype
        self.moe = MoEModel(self.model)
        self.layers_path = self.moe.spec.layers
        self.source = LayerSource(ckpt, len(self.moe.layers), fp8, self.dtype, mxfp4)
        self.weight_mapping = get_model_conversion_mapping(self.model)
        self.loaded: set[int] = set()
        self._load(self.source.read(self.source.outer), self._outer_keys(), "outer modules")
        self._init_outer_buffers()
        if getattr(self.model.config, "tie_word_embeddings", False):
            self.moe.lm_head().weight = self.moe.embed().weight

    @property
    def checkpoint_bytes(self) -> int:
        return self.source.ckpt.total_bytes

    def _outer_keys(self) -> set[str]:
        prefix = self.layers_path + "."
        tied = {f"{self.moe.spec.lm_head}.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
        return {k for k in self.model.state_dict() if not k.startswith(prefix)} - tied

    def _layer_keys(self, i: int) -> set[str]:
        prefix = f"{self.layers_path}.{i}."
        return {prefix + k for k in self.moe.layers[i].state_dict()}

    def _load(self, tensors: dict[str, torch.Tensor], expected: set[str], what: str) -> None:
        from transformers.core_model_loading import convert_and_load_state_dict_in_model
        from transformers.modeling_utils import LoadStateDictConfig

        cfg = LoadStateDictConfig(device_map={"": "cpu"}, dtype=self.dtype, weight_mapping=self.weight_mapping)
        info, _ = convert_and_load_state_dict_in_model(self.model, tensors, cfg)
        missing = sorted(expected & set(info.missing_keys))
        if missing:
            raise ModelError(f"checkpoint {self.model_dir} lacks {missing[0]} ({what}"
                             f"{f', and {len(missing) - 1} more' if len(missing) > 1 else ''})")
        if info.mismatched_keys:
            key, got, want = sorted(info.mismatched_keys, key=str)[0]
            raise ModelError(f"checkpoint tensor for {key} has shape {list(got)}, the config needs {list(want)}")
        if info.conversion_errors:
            key, msg = next(iter(info.conversion_errors.items()))
            raise ModelError(f"checkpoint tensor {key} could not be converted: {msg}")

    def _init_outer_buffers(self) -> None:
        """Non-persistent buffers (rotary tables) are computed from the config, as from_pretrained does."""
        prefix = self.layers_path + "."
        for name, module in self.model.named_modules():
            if name.startswith(prefix) or name == self.layers_path:
                continue
            own = [t for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)) if t.is_meta]
            if not own:
                continue
            if any(p.is_meta for p in module.parameters(recurse=False)):
                raise ModelError(f"checkpoint {self.model_dir} has no weights for {name}")
            module.to_empty(device="cpu", recurse=False)
            self.model._init_weights(module)

    @torch.no_grad()
    def load_layer(self, i: int, source: LayerSource | None = None, device: torch.device | None = None) -> nn.Module:
        """Fill decoder layer i from `source` (default: the model's checkpoint) and move it to `device`."""
        source = source or self.source
        self._load(source.read(source.layers[i]), self._layer_keys(i), f"decoder layer {i}")
        layer = self.moe.layers[i]
        if device is not None and device.type != "cpu":
            layer.to(device)
        self.loaded.add(i)
        return layer

    def release_layer(self, i: int) -> None:
        """Drop layer i's weights (back to meta) and any packed kernel weights its experts hold."""
        layer = self.moe.layers[i]
        for module in layer.modules():
            if getattr(module, "kernel", None) is not None:
                module.kernel = None
        layer.to("meta")
        self.loaded.discard(i)
        return_freed_memory()

    def outer_to(self, device: torch.device) -> None:
        """Place everything but the decoder layers on `device` (embeddings, norms, head, rotary)."""
        base_path, _, layers_name = self.layers_path.rpartition(".")
        base = get_path(self.model, base_path) if base_path else self.model
        for name, child in self.model.named_children():
            if child is not base:
                child.to(device)
        for name, child in base.named_children():
            if name != layers_name:
                child.to(device)
