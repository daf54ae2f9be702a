"""Write a streamed run's quantized model layer by layer into a staging directory, then publish it.

Each decoder layer, once quantized, goes to `model-layer-NNNNN.safetensors` (dequantized grid
weights under the checkpoint's on-disk names) and `moeq_quant-layer-NNNNN.safetensors` (its
integer codes, scales, zero points, bits) — a layer whose routed experts were processed by chunks
also gets `…-NNNNN-eEEEEE.safetensors` pairs, one per chunk (first expert EEEEE), whose code
tensors the loader joins along the expert dimension (experts stored fused, [experts, ...], go to
one `model-layer-NNNNN-experts.safetensors`, laid out in full and filled chunk by chunk) — after
which the layer's records keep only their shapes (the tensors are on disk). `finish` adds the
embeddings/norm/head shard, the index, config, tokenizer, `moeq_quant.safetensors` (probe),
`moeq.json` (listing the code shards) and checksums, and renames the staging directory into
place — the same layout `load_quantized` reads and a plain sharded checkpoint transformers loads.
"""

from __future__ import annotations

import errno
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from moeq.contract.errors import ArtifactError
from moeq.quant_core.io.save import CHECKSUMS_FILE, CODES_FILE, META_FILE, _meta, sha256_file, transform_tensors
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe
from moeq.quant_core.streaming.checkpoint import INDEX_FILE, Checkpoint, flush_and_drop
from moeq.quant_core.streaming.fused_file import FusedExpertsFile
from moeq.quant_core.streaming.skeleton import SkeletonModel

OUTER_FILE = "model-outer.safetensors"


def layer_file(i: int) -> str:
    return f"model-layer-{i:05d}.safetensors"


def codes_file(i: int) -> str:
    return f"moeq_quant-layer-{i:05d}.safetensors"


def chunk_suffix(name: str, e0: int) -> str:
    """The file of one chunk of a layer's routed experts, first expert e0."""
    return name.replace(".safetensors", f"-e{e0:05d}.safetensors")


def _on_disk(model, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from transformers.core_model_loading import revert_weight_conversion

    return {k: v.detach().cpu().contiguous() for k, v in revert_weight_conversion(model, dict(tensors)).items()}


def _spill(rec):
    """The record with its tensors replaced by shape-only (meta) tensors: bit accounting still works."""
    meta = lambda t: torch.empty(t.shape, dtype=t.dtype, device="meta")  # noqa: E731
    rec.codes = meta(rec.codes)
    rec.params = replace(rec.params, scale=meta(rec.params.scale), zero=meta(rec.params.zero))


class StagedWriter:
    def __init__(self, sk: SkeletonModel, save_dir: Path | None, scratch: Path) -> None:
        self.sk = sk
        self.save_dir = None if save_dir is None else Path(save_dir).expanduser().resolve()
        parent = self.save_dir.parent if self.save_dir is not None else Path(scratch)
        parent.mkdir(parents=True, exist_ok=True)
        name = self.save_dir.name if self.save_dir is not None else "stream"
        self.dir = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
        self.weight_map: dict[str, str] = {}
        self.code_shards: list[str] = []
        self.layer_files: dict[int, list[str]] = {}  # per layer: its weight files (whole, or one per chunk)
        self.fused: dict[int, FusedExpertsFile] = {}  # per layer: its fused experts tensors, filled by chunks

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            self.discard()
            where = self.save_dir or self.dir
            if exc.errno == errno.ENOSPC:
                raise ArtifactError(f"disk full while writing the quantized model to {where}; nothing was kept") from None
            raise ArtifactError(f"cannot write the quantized model to {where}: {exc}") from None

    def write_layer(self, i: int, state: QuantState) -> None:
        self._guard(self._write_layer, i, state)

    def _write_layer(self, i: int, state: QuantState) -> None:
        """Layer i's loaded tensors (routed experts written by chunks are on meta by now) and codes."""
        prefix = f"{self.sk.layers_path}.{i}."
        layer = self.sk.moe.layers[i]
        self._write(i, layer_file(i), codes_file(i), {prefix + k: v for k, v in layer.state_dict().items()
                                                      if not v.is_meta}, state, prefix, transforms=True)

    def write_expert_chunk(self, i: int, e0: int, module, key: str, state: QuantState) -> None:
        """Experts e0.. of layer i, held by `module` (at `key`) as 0..: their weights under their
        own on-disk names, and their codes (`state`: this chunk's records alone)."""
        self._guard(self._write_expert_chunk, i, e0, module, key, state)

    def _write_expert_chunk(self, i, e0, module, key, state) -> None:
        from moeq.quant_core.streaming.expert_chunks import EXPERT_INDEX, full_count

        dense = _on_disk(self.sk.model, {key + "." + k: v for k, v in module.state_dict().items()})
        fused = {k: v for k, v in dense.items() if not EXPERT_INDEX.search(k)}
        if fused:  # stored [experts, ...]: rows e0.. of the layer's one fused file
            self._fused_rows(i, e0, full_count(module), fused)
        dense = {EXPERT_INDEX.sub(lambda m: f".experts.{int(m.group(1)) + e0}.", k, count=1): v
                 for k, v in dense.items() if k not in fused}
        self._write(i, chunk_suffix(layer_file(i), e0), chunk_suffix(codes_file(i), e0), dense, state, key + ".",
                    converted=True)

    def _fused_rows(self, i: int, e0: int, n: int, tensors: dict[str, torch.Tensor]) -> None:
        """Rows e0.. of layer i's fused experts tensors, in `model-layer-NNNNN-experts.safetensors`
        (laid out for all n experts when its first chunk comes)."""
        file = self.fused.get(i)
        if file is None:
            name = layer_file(i).replace(".safetensors", "-experts.safetensors")
            file = self.fused[i] = FusedExpertsFile(self.dir / name, tensors, n)
            self.weight_map.update({k: name for k in tensors})
            self.layer_files.setdefault(i, []).append(name)
        file.write_rows(tensors, e0)

    def _write(self, i: int, weights_name: str, codes_name: str, tensors: dict, state: QuantState, prefix: str,
               converted: bool = False, transforms: bool = False) -> None:
        dense = tensors if converted else _on_disk(self.sk.model, tensors)
        if dense:
            save_file(dense, str(self.dir / weights_name), metadata={"format": "pt"})
            flush_and_drop(self.dir / weights_name)
            self.weight_map.update({k: weights_name for k in dense})
            self.layer_files.setdefault(i, []).append(weights_name)
        del dense
        codes = {}
        for key, rec in state.records.items():
            if key.startswith(prefix) and not rec.codes.is_meta:
                codes[f"{key}.codes"] = rec.codes.cpu().clone()
                codes[f"{key}.scale"] = rec.params.scale.float().cpu().clone()
                codes[f"{key}.zero"] = rec.params.zero.float().cpu().clone()
                codes[f"{key}.bits"] = rec.params.bits.reshape(-1).cpu().clone()
                _spill(rec)
        if transforms:  # the layer's DuQuant online transforms (once per layer, never per chunk)
            for key, t in state.transforms.items():
                if key.startswith(prefix):
                    codes.update(transform_tensors(key, t))
        if codes:
            save_file(codes, str(self.dir / codes_name))
            flush_and_drop(self.dir / codes_name)
            self.code_shards.append(codes_name)

    def layer_source(self, i: int):
        """Layer i's tensors written so far, readable as a checkpoint (its chunks reloaded after
        quantization to make the layer's outputs)."""
        from moeq.quant_core.streaming.skeleton import LayerSource

        ckpt = Checkpoint.of_shards(self.dir, self.layer_files.get(i, []))
        return LayerSource(ckpt, len(self.sk.moe.layers), None, self.sk.dtype)

    def write_index(self) -> None:
        """Index of everything written so far (the layers can then be read back as a checkpoint)."""
        total = sum((self.dir / f).stat().st_size for f in set(self.weight_map.values()))
        (self.dir / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total},
                                                       "weight_map": self.weight_map}, indent=1))

    def finish(self, tokenizer, state: QuantState, recipe: Recipe, result: dict,
               probe_ids: torch.Tensor, probe_logits: torch.Tensor) -> list[dict]:
        """Write the remaining files and publish the directory atomically; returns artifact rows."""
        if self.save_dir is None:
            raise ArtifactError("no save directory was given")
        return self._guard(self._finish, tokenizer, state, recipe, result, probe_ids, probe_logits)

    def _finish(self, tokenizer, state, recipe, result, probe_ids, probe_logits) -> list[dict]:
        sk, tmp = self.sk, self.dir
        prefix = sk.layers_path + "."
        outer = {k: v for k, v in sk.model.state_dict().items() if not k.startswith(prefix)}
        if getattr(sk.model.config, "tie_word_embeddings", False):
            outer.pop(f"{sk.moe.spec.lm_head}.weight", None)
        outer = _on_disk(sk.model, outer)
        save_file(outer, str(tmp / OUTER_FILE), metadata={"format": "pt"})
        self.weight_map.update({k: OUTER_FILE for k in outer})
        self.write_index()
        sk.model.config.save_pretrained(tmp)
        if getattr(sk.model, "generation_config", None) is not None:
            sk.model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_file({"probe.input_ids": probe_ids.cpu().contiguous(), "probe.logits": probe_logits.cpu().contiguous()},
                  str(tmp / CODES_FILE))
        meta = _meta(state, recipe, result)
        meta["codes_shards"] = list(self.code_shards)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        sums = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1))
        if self.save_dir.exists():
            shutil.rmtree(self.save_dir)
        tmp.rename(self.save_dir)
        rows = []
        for name, digest in sums.items():
            path = self.save_dir / name
            rows.append({"kind": "quantized_model", "path": str(path), "bytes": path.stat().st_size, "sha256": digest})
        return rows

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
