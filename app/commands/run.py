"""`moeq run` — quantize and evaluate one recipe now, record it, print the result (DESIGN §4.1)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from quant_core.errors import MoeqError, RecipeError

EPILOG = """examples:
  moeq run --model testbed-mixtral --bits W4A16 --techniques gptq
  moeq run --model testbed-mixtral --bits W4A4 --techniques eaquant --json
  moeq run --model /models/Mixtral-8x7B --recipe recipe.json --save out/mixtral-w4
techniques: rtn, gptq, agq, smooth, smoothquant, rotation; presets: duquant, eaquant, moequant, gptq_rotation"""


def register(sub) -> None:
    import argparse

    p = sub.add_parser("run", help="quantize + evaluate one recipe and print the result",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="zoo name (see 'moeq zoo list') or a local Hugging Face model directory")
    p.add_argument("--recipe", type=Path, help="recipe JSON file (DESIGN §4.2); flags below override it")
    p.add_argument("--bits", help="weight/activation bits, e.g. W4A16, W3A4, W4A16g32 (g-1 = per channel)")
    p.add_argument("--techniques", help="comma-separated techniques/presets, e.g. rotation,gptq or eaquant")
    p.add_argument("--group-size", help="weight group size (integer) or 'channel'")
    p.add_argument("--router", choices=["fp", "quantize", "align"], help="router treatment")
    p.add_argument("--samples", type=int, help="calibration sequences")
    p.add_argument("--seq-len", type=int, help="calibration sequence length")
    p.add_argument("--eval-limit", type=int, help="items per evaluation task")
    p.add_argument("--seed", type=int)
    p.add_argument("--save", type=Path, help="write the quantized model (HF checkpoint + codes) to this directory")
    p.add_argument("--json", action="store_true", help="print the result JSON (DESIGN §4.3)")
    p.add_argument("--user", help="record the run under this user (default: local)")
    p.add_argument("--project", help="record the run under this project (default: default)")
    p.set_defaults(handler=handle)


def build_recipe_dict(args) -> dict:
    """Recipe dict from --recipe plus overriding flags (validated later by parse_recipe)."""
    from quant_core.presets import expand, merge
    from quant_core.recipe import parse_bits

    recipe: dict = {}
    if args.recipe is not None:
        try:
            recipe = json.loads(args.recipe.read_text())
        except OSError as exc:
            raise RecipeError("<file>", f"cannot read {args.recipe}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise RecipeError("<file>", f"{args.recipe} is not valid JSON: {exc}") from None
        if not isinstance(recipe, dict):
            raise RecipeError("<root>", f"{args.recipe} must hold a JSON object")
    if args.model:
        recipe["model"] = args.model
    if args.bits:
        recipe = merge(recipe, parse_bits(args.bits))
    if args.techniques:
        recipe = merge(recipe, expand(args.techniques.split(",")))
    if args.group_size:
        g = None if args.group_size in ("channel", "none", "-1") else _int(args.group_size, "weights.group_size")
        recipe = merge(recipe, {"weights": {"group_size": g}})
    if args.router:
        recipe["router"] = args.router
    for flag, key in (("samples", "samples"), ("seq_len", "seq_len")):
        if getattr(args, flag) is not None:
            recipe = merge(recipe, {"calibration": {key: getattr(args, flag)}})
    if args.eval_limit is not None:
        recipe = merge(recipe, {"eval": {"limit": args.eval_limit}})
    if args.seed is not None:
        recipe["seed"] = args.seed
    if not recipe.get("model"):
        raise RecipeError("model", "no model given (use --model or a recipe with \"model\")")
    return recipe


def _int(text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RecipeError(key, f"expected an integer, got {text!r}") from None


class _StderrProgress:
    """Throttled one-line progress on stderr (only when it is a terminal)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.enabled = sys.stderr.isatty()

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.2 or fraction >= 1.0):
            self.last = now
            print(f"\r[{fraction * 100:5.1f}%] {stage:<60}", end="" if fraction < 1.0 else "\n", file=sys.stderr)


def handle(args, settings) -> int:
    from quant_core.recipe import parse_recipe

    try:
        recipe = build_recipe_dict(args)
        parse_recipe(recipe)
        result = _execute(settings, recipe, args.save, args.user, args.project)
    except MoeqError as exc:
        if args.json:
            print(json.dumps({"status": "failed", "error": {"type": type(exc).__name__, "message": str(exc)}}))
            return 2
        raise
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    elif result["status"] == "succeeded":
        print(format_summary(result))
    else:
        print(f"moeq: error: run {result['run_id']} {result['status']}: {result['error']['type']}: "
              f"{result['error']['message']}", file=sys.stderr)
    return 0 if result["status"] == "succeeded" else 1


def _execute(settings, recipe: dict, save: Path | None, user: str | None, project: str | None) -> dict:
    """Record the run in the database and execute it in this process (progress on stderr)."""
    from jobs.submit import create_and_execute

    return create_and_execute(settings, recipe, user=user, project=project, save_dir=save,
                              progress=_StderrProgress())


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def format_summary(r: dict) -> str:
    """Human-readable result: the key metrics against FP, routing per layer, bits, time."""
    from quant_core.recipe import parse_recipe, recipe_summary

    m = r["metrics"]
    info = r.get("model_info", {})
    lines = [f"run {r.get('run_id') or '-'}  {r['status']}",
             f"model   {r['model']} ({info.get('family')}, {info.get('num_layers')} layers, "
             f"{info.get('num_experts')} experts, top-{info.get('top_k')})",
             f"recipe  {recipe_summary(parse_recipe(r['recipe']))}"]
    if "perplexity" in m:
        lines.append(f"ppl     {_fmt(m['perplexity'], '.3f')}  (FP {_fmt(m['fp_perplexity'], '.3f')})"
                     f"   KL(FP||Q) {_fmt(m.get('kl'))}")
    routing = m.get("routing")
    if routing:
        per = " ".join(f"{a:.3f}" for a in routing["topk_agreement"])
        lines.append(f"routing top-k agreement {_fmt(routing['mean_topk_agreement'], '.3f')}  per layer: {per}")
    for t in r.get("tasks", []):
        lines.append(f"task    {t['name']:<18} acc {t['acc']:.3f}  (FP {t['fp_acc']:.3f}, chance {t['chance']:.2f})")
    if m.get("avg_accuracy") is not None:
        lines.append(f"avg acc {m['avg_accuracy']:.3f}  (FP {m['fp_avg_accuracy']:.3f})")
    b = r["bits"]
    lines.append(f"bits    {b['avg_weight_bits']:.3f} avg weight bits, {b['bits_per_param_with_overhead']:.3f} with scales/zeros")
    fb = r["calibration"].get("fallbacks") or []
    if fb:
        lines.append(f"calib   {len(fb)} expert(s) fell back: " + ", ".join(f"L{f['layer']}E{f['expert']}" for f in fb[:8]))
    lines.append("time    " + "  ".join(f"{k[:-2]} {v:.1f}s" for k, v in r["timings"].items()))
    if r.get("peak_host_rss_mb") is not None:
        dev = r.get("peak_device_mb")
        lines.append(f"memory  peak host RSS {r['peak_host_rss_mb']:.0f} MB, peak device "
                     + ("none (CPU run)" if dev is None else f"{dev:.0f} MB"))
    return "\n".join(lines)
