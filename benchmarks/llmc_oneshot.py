"""llm-compressor side of `vs_llmcompressor.py`: run llm-compressor's default GPTQ (`oneshot`) on the token
windows moeq calibrates on, and write the result as a plain dequantized checkpoint that moeq's evaluation loads.

Runs in llm-compressor's own environment (its transformers pin differs from moeq's), imports nothing from moeq:

    /work/venv-llmc/bin/python benchmarks/llmc_oneshot.py --model DIR --windows calib.pt --bits 4 \
        --group-size 128 --out OUT

Writes OUT/model.safetensors (every tensor under the source checkpoint's own name; the quantized Linears hold
their dequantized values), copies the source config/tokenizer files, and OUT/llmc.json (versions, timings,
the modifier's settings, which modules were quantized and how many distinct values each weight group holds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/ holds modules (kernels.py, load.py, ...) whose names shadow packages transformers imports
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

COPY = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json")
QUANT_SUFFIXES = ("_scale", "_zero_point", "_g_idx", "_global_scale")
# llm-compressor saves linearized Mixtral experts as gate/up/down_proj; the checkpoint names them w1/w3/w2
EXPERT_NAMES = {".gate_proj.weight": ".w1.weight", ".up_proj.weight": ".w3.weight", ".down_proj.weight": ".w2.weight"}


def source_name(key: str, source: set[str]) -> str:
    if key in source or ".experts." not in key:
        return key
    for theirs, ours in EXPERT_NAMES.items():
        if key.endswith(theirs) and key[: -len(theirs)] + ours in source:
            return key[: -len(theirs)] + ours
    return key


def scheme(bits: int, group_size: int):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy="group", group_size=group_size)
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}


def quantize(model_dir: Path, windows_file: Path, bits: int, group_size: int, all_experts: bool) -> tuple:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modeling.moe.linearize import load_quantizable_moe
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM

    windows = torch.load(windows_file)
    with load_quantizable_moe():  # llm-compressor's documented way to load an MoE: experts as 2-D Linears
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ds = Dataset.from_dict({"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()})
    # the router (".gate") and lm_head stay FP, as moeq's default recipe keeps them
    modifier = GPTQModifier(config_groups=scheme(bits, group_size), ignore=["lm_head", r"re:.*\.gate$"])
    wall, cpu = time.perf_counter(), time.process_time()
    oneshot(model=model, dataset=ds, recipe=modifier, num_calibration_samples=int(windows.shape[0]),
            max_seq_length=int(windows.shape[1]), shuffle_calibration_samples=False,
            moe_calibrate_all_experts=all_experts)
    timing = {"oneshot_wall_s": time.perf_counter() - wall, "oneshot_cpu_s": time.process_time() - cpu}
    settings = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                for k, v in modifier.model_dump().items() if k not in ("config_groups",)}
    return model, timing, settings


def distinct_values_per_group(w, group_size: int) -> int:
    rows = w.reshape(w.shape[0], -1, group_size) if w.shape[1] % group_size == 0 else w[:, None, :]
    return max(len(set(g.tolist())) for r in rows for g in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--windows", type=Path, required=True)
    ap.add_argument("--bits", type=int, required=True)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--routed-only", action="store_true",
                    help="calibrate each expert on its routed tokens (llm-compressor's default: every expert sees "
                         "every token, moe_calibrate_all_experts=True)")
    args = ap.parse_args()

    import compressed_tensors
    import llmcompressor
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    model, timing, settings = quantize(args.model, args.windows, args.bits, args.group_size,
                                       not args.routed_only)
    quantized = sorted(n for n, m in model.named_modules() if hasattr(m, "weight_scale"))
    with tempfile.TemporaryDirectory() as tmp:
        # transformers writes the checkpoint's own (on-disk) names; drop llm-compressor's quantization tensors
        model.save_pretrained(tmp, save_compressed=False)
        tensors = {}
        for f in sorted(Path(tmp).glob("*.safetensors")):
            tensors.update({k: v for k, v in load_file(f).items() if not k.endswith(QUANT_SUFFIXES)})
    source = load_file(args.model / "model.safetensors")
    tensors = {source_name(k, set(source)): v for k, v in tensors.items()}
    if set(tensors) != set(source):
        sys.exit(f"llm-compressor output names differ from the source checkpoint: "
                 f"missing {sorted(set(source) - set(tensors))[:5]}, extra {sorted(set(tensors) - set(source))[:5]}")
    changed = sorted(k for k in source if not torch.equal(source[k], tensors[k].to(source[k].dtype)))
    levels = {k: distinct_values_per_group(tensors[k].float(), args.group_size) for k in changed}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(source[k].dtype).contiguous() for k, v in tensors.items()}, str(args.out / "model.safetensors"))
    for name in COPY:
        if (args.model / name).is_file():
            shutil.copy(args.model / name, args.out / name)
    (args.out / "llmc.json").write_text(json.dumps({
        "versions": {"llmcompressor": llmcompressor.__version__, "compressed_tensors": compressed_tensors.__version__,
                     "transformers": transformers.__version__, "torch": torch.__version__},
        "bits": args.bits, "group_size": args.group_size, "calibration": list(torch.load(args.windows).shape),
        "modifier": settings, "moe_calibrate_all_experts": not args.routed_only, "quantized_modules": len(quantized), "changed_tensors": changed,
        "max_distinct_values_per_group": max(levels.values()) if levels else None, **timing}, indent=1))
    print(json.dumps({"changed_tensors": len(changed), **timing}))


if __name__ == "__main__":
    main()
