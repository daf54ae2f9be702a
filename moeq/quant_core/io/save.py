"""Save a quantized model: a plain HF checkpoint of the dequantized weights (exactly the grid values,
loadable with no moeq code) plus the integer codes/scales, the run's metadata and checksums.

Layout of DIR:
  config.json, model.safetensors, tokenizer files   — HF checkpoint (dequantized weights)
  moeq_quant.safetensors                            — per record: .codes (uint8), .scale, .zero, .bits;
                                                      probe.input_ids / probe.logits for the round-trip check
  moeq.json                                         — format, recipe, records, runtime settings, result summary
  checksums.json                                    — sha256 of every file above
Written into a temporary sibling directory and renamed, so a failure (e.g. a full disk) leaves no
half-written model behind; an existing non-empty DIR is refused, never replaced.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from moeq.contract.errors import ArtifactError
from moeq.quant_core.io.atomic import apply_umask, check_target
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe

FORMAT = "moeq-quantized"
FORMAT_VERSION = 1
META_FILE = "moeq.json"
CODES_FILE = "moeq_quant.safetensors"
CHECKSUMS_FILE = "checksums.json"


def sha256_file(path: Path) -> str:
    """The file's sha256; opened non-blocking and fstat-checked (a FIFO is refused, never waited on)."""
    from moeq.contract.safe_open import regular_file

    h = hashlib.sha256()
    with regular_file(path) as (f, _):
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _codes_tensors(state: QuantState) -> dict[str, torch.Tensor]:
    out = {}
    for key, rec in state.records.items():
        out[f"{key}.codes"] = rec.codes.cpu().clone()
        out[f"{key}.scale"] = rec.params.scale.float().cpu().clone()
        out[f"{key}.zero"] = rec.params.zero.float().cpu().clone()
        out[f"{key}.bits"] = rec.params.bits.reshape(-1).cpu().clone()
    for key, t in state.transforms.items():  # DuQuant online input transforms
        out.update(transform_tensors(key, t))
    return out


def transform_tensors(key: str, t) -> dict[str, torch.Tensor]:
    """A DuQuant online transform's tensors under the names `load_quantized` reads."""
    return {f"transform.{key}.{name}": v.cpu().clone() for name, v in t.tensors().items()}


def _meta(state: QuantState, recipe: Recipe, result: dict) -> dict:
    return {
        "format": FORMAT, "version": FORMAT_VERSION,
        "recipe": recipe.to_dict(),
        "records": {k: {"role": r.role, "layer": r.layer, "group_size": r.params.group_size,
                        "symmetric": r.params.symmetric, "shape": list(r.codes.shape)}
                    for k, r in state.records.items()},
        "input_quant": state.input_quant,
        "quant_experts": {str(k): v for k, v in state.quant_experts.items()},
        "transforms": sorted(state.transforms),
        "summary": {k: result.get(k) for k in ("model", "bits", "metrics")},
    }


@torch.no_grad()
def _probe(model, probe_ids: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(input_ids=probe_ids.to(device), use_cache=False).logits.float().cpu()


def save_quantized(save_dir: Path, model, tokenizer, state: QuantState, recipe: Recipe, result: dict,
                   probe_ids: torch.Tensor | None = None) -> list[dict]:
    """Write DIR atomically; returns artifact rows (kind, path, bytes, sha256) for each file."""
    save_dir = Path(save_dir).expanduser().resolve()
    check_target(save_dir)
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    if probe_ids is None:
        probe_ids = torch.arange(4, 4 + 16).remainder(model.config.vocab_size)[None]
    tmp = Path(tempfile.mkdtemp(prefix=f".{save_dir.name}-", dir=save_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tensors = _codes_tensors(state)
        tensors["probe.input_ids"] = probe_ids.cpu()
        tensors["probe.logits"] = _probe(model, probe_ids)
        save_file(tensors, str(tmp / CODES_FILE))
        (tmp / META_FILE).write_text(json.dumps(_meta(state, recipe, result), indent=1, default=str))
        sums = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1))
        apply_umask(tmp)
        check_target(save_dir)
        if save_dir.exists():
            save_dir.rmdir()  # empty (checked above); rmdir refuses if something appeared since
        tmp.rename(save_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise ArtifactError(f"disk full while saving the quantized model to {save_dir}; nothing was written") from None
        raise ArtifactError(f"cannot save the quantized model to {save_dir}: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rows = []
    for name, digest in json.loads((save_dir / CHECKSUMS_FILE).read_text()).items():
        path = save_dir / name
        rows.append({"kind": "quantized_model", "path": str(path), "bytes": path.stat().st_size, "sha256": digest})
    return rows
