"""Does EBSS balance expert usage? σ of per-expert routed-token counts (sample standard deviation
over the experts, averaged over the MoE layers) of the FP model on: EBSS sets at the default τ, the
same generator with the balance term off (τ → ∞), and plain corpus windows — same sequence count
and length, over several seeds (mean ± std).

    OMP_NUM_THREADS=1 python benchmarks/ebss_balance.py --model testbed-mixtral --seeds 3 --out benchmarks/results/ebss_balance.json
    (likewise --model testbed-outliers; the file keeps one entry per model)
"""

from __future__ import annotations

import json
import statistics

import torch

from common import context, standard_args, write_json


def usage_spread(moe, windows: torch.Tensor) -> float:
    """Mean over MoE layers of the standard deviation over experts of routed-token counts (BOS excluded)."""
    from moeq.quant_core.adapters.dispatch import DispatchRecorder

    layers = sorted(moe.blocks)
    counts = {i: torch.zeros(moe.blocks[i].num_experts) for i in layers}
    with DispatchRecorder(moe, device=None) as rec, torch.no_grad():
        for w in windows.split(8):
            rec.clear()
            moe.model(input_ids=w)
            for i in layers:
                idx = rec.take(i).index.reshape(w.shape[0], w.shape[1], -1)[:, 1:].reshape(-1)
                counts[i] += torch.bincount(idx.cpu(), minlength=counts[i].numel()).float()
    return statistics.mean(float(c.std()) for c in counts.values())


def main() -> None:
    from moeq.contract.recipe import CalibrationSpec, EbssSpec
    from moeq.quant_core.adapters.model import MoEModel
    from moeq.quant_core.calibration.data import token_windows
    from moeq.quant_core.calibration.ebss import ebss_windows
    from moeq.quant_core.model_io import load_model, resolve_model

    ap = standard_args(__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=32)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--taus", default="1.2,1e9", help="EBSS τ values (1e9: the balance term off)")
    ap.add_argument("--usages", default="fraction,count", help="u in σ: routed-token fractions or counts")
    args = ap.parse_args()
    ctx = context()
    path = resolve_model(args.model, ctx)
    model, tok = load_model(path, ctx)
    moe = MoEModel(model)
    rows = {"plain corpus windows": []}
    for seed in range(args.seeds):
        rows["plain corpus windows"].append(usage_spread(moe, token_windows("auto", "calib", tok, args.sequences,
                                                                           args.length, seed)))
        for usage in args.usages.split(","):
            for tau in (float(t) for t in args.taus.split(",")):
                if tau >= 1e6 and usage != "fraction":
                    continue  # the balance term off: u does not matter
                spec = CalibrationSpec(samples=args.sequences, seq_len=args.length, sampler="ebss",
                                       ebss=EbssSpec(width=4, tau=tau, cache=False, usage=usage))
                windows, _ = ebss_windows(moe, tok, spec, seed, ctx, path)
                label = "EBSS, balance term off (tau=1e9)" if tau >= 1e6 else f"EBSS u={usage} tau={tau:g}"
                rows.setdefault(label, []).append(usage_spread(moe, windows))
    out = [{"set": k, "sigma_mean": statistics.mean(v), "sigma_std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "runs": v} for k, v in rows.items()]
    print("| set | σ of routed-token counts per expert (mean ± std over seeds) |\n| --- | --- |")
    for r in out:
        print(f"| {r['set']} | {r['sigma_mean']:.1f} ± {r['sigma_std']:.1f} |")
    if args.out:  # one entry per model: runs on other models already in the file are kept
        models = json.loads(args.out.read_text()).get("models", {}) if args.out.is_file() else {}
        models[args.model] = {"sequences": args.sequences, "length": args.length, "seeds": args.seeds, "rows": out}
        write_json(args.out, {"models": models})


if __name__ == "__main__":
    main()
