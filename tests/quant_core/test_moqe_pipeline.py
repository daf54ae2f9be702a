"""MoQE runs through the single-run pipeline: its variants are scored by the same load, seed policy,
evaluation and result code as a run of the same recipe alone, and its mixture is gathered from them."""

from __future__ import annotations

import torch

from moeq.quant_core.adapters.dispatch import Dispatch
from moeq.quant_core.evaluate.probe import ProbeResult
from moeq.quant_core.moqe.mixture import mixed_probe, oracle_perplexity


def _probe(k: int, windows: int, seq: int, vocab: int = 5, experts: int = 4) -> ProbeResult:
    g = torch.Generator().manual_seed(k)
    nll = torch.rand(windows, generator=g, dtype=torch.float64) * 10
    logp = torch.log_softmax(torch.randn(windows * (seq - 1), vocab, generator=g), -1).half()
    tokens = windows * seq
    d = Dispatch(torch.randint(0, experts, (tokens, 2), generator=g), torch.rand(tokens, 2, generator=g),
                 torch.randn(tokens, experts, generator=g))
    return ProbeResult(float(nll.sum()), windows * (seq - 1), logp, {0: d}, nll)


def test_the_mixture_answers_each_window_with_the_variant_the_router_picked():
    windows, seq = 5, 4
    probes = [_probe(k, windows, seq) for k in range(3)]
    picks = torch.tensor([2, 0, 1, 1, 2])
    mix = mixed_probe(probes, picks, seq)
    for w, k in enumerate(picks.tolist()):
        assert mix.window_nll[w] == probes[k].window_nll[w]
        rows = slice(w * (seq - 1), (w + 1) * (seq - 1))
        assert torch.equal(mix.logprobs[rows], probes[k].logprobs[rows])
        toks = slice(w * seq, (w + 1) * seq)
        for field in ("index", "weights", "logits"):
            assert torch.equal(getattr(mix.dispatch[0], field)[toks], getattr(probes[k].dispatch[0], field)[toks])
    assert abs(mix.nll_sum - sum(probes[k].window_nll[w].item() for w, k in enumerate(picks.tolist()))) < 1e-9
    best = torch.stack([p.window_nll for p in probes], 1).min(1).values
    assert abs(oracle_perplexity(probes) - float(torch.exp(best.sum() / (windows * (seq - 1))))) < 1e-9
    assert oracle_perplexity(probes) <= mix.perplexity


def test_a_moqe_variant_scores_exactly_as_the_same_recipe_run_alone(tiny_zoo, tmp_path):
    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext

    ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path)
    shared = {"model": "tiny-mixtral", "seed": 3, "calibration": {"source": "random", "samples": 4, "seq_len": 32},
              "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32, "kl_tokens": 64}}
    w4 = {"weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}
    moqe = run({**shared, "weights": {"group_size": 16},
                "moqe": {"variants": [{"weights": {"bits": 2, "group_size": 16}, "techniques": ["rtn"]}, w4],
                         "train_samples": 8, "eval_samples": 6, "epochs": 2}}, ctx)
    alone = run({**shared, **w4, "eval": {**shared["eval"], "ppl_windows": 6}}, ctx)  # same windows: 6 of them
    variant = moqe["moqe"]["variants"][1]
    assert variant["perplexity"] == alone["metrics"]["perplexity"] and variant["kl"] == alone["metrics"]["kl"]
    assert variant["mean_topk_agreement"] == alone["metrics"]["routing"]["mean_topk_agreement"]
    assert moqe["metrics"]["fp_perplexity"] == alone["metrics"]["fp_perplexity"]  # one FP reference
    assert moqe["moqe"]["oracle"]["perplexity"] <= moqe["metrics"]["perplexity"]
    # the common fields of a single run
    assert set(moqe["text_check"]) == set(alone["text_check"]) and moqe["warnings"] == alone["warnings"]
    assert {"load_s", "fp_evaluate_s", "quantize_s", "evaluate_s", "router_s"} <= set(moqe["timings"])
    assert moqe["environment"]["kernels"]["moe"] == alone["environment"]["kernels"]["moe"]
    assert moqe["expert_stats"] == [] and len(moqe["metrics"]["routing"]["layers"]) == 3
    assert moqe["moqe"]["stored_weight_bits"] == 6.0 and moqe["bits"]["avg_weight_bits"] == 3.0


def test_a_saved_model_variant_scores_as_the_run_that_saved_it(tiny_zoo, tmp_path):
    from dataclasses import replace

    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext

    ctx = RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path / "cache")
    base = {"model": "tiny-mixtral", "calibration": {"source": "random", "samples": 4, "seq_len": 32},
            "eval": {"source": "random", "tasks": [], "ppl_windows": 6, "seq_len": 32}}
    saved = tmp_path / "saved"
    alone = run({**base, "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}, replace(ctx, save_dir=saved))
    moqe = run({**base, "weights": {"group_size": 16},
                "moqe": {"variants": [f"path:{saved}", {"weights": {"bits": 2, "group_size": 16}, "techniques": ["rtn"]}],
                         "train_samples": 8, "eval_samples": 6, "epochs": 2}}, replace(ctx, saved_roots=(tmp_path,)))
    variant = moqe["moqe"]["variants"][0]
    assert variant["label"] == f"saved:{saved}" and variant["bits"] == 4.0
    assert variant["perplexity"] == alone["metrics"]["perplexity"] and variant["kl"] == alone["metrics"]["kl"]
    assert moqe["bits"]["avg_weight_bits"] == 3.0 and moqe["moqe"]["stored_weight_bits"] == 6.0


def test_moqe_progress_is_monotone_and_weighted_by_its_measured_stage_costs(tiny_zoo, tmp_path):
    """A MoQE run records its stage seconds like a single run; the next run of the same model splits
    the bar by them (the variants stage gets its measured share, the cached FP evaluation none)."""
    import json

    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext
    from moeq.quant_core.stage_plan import FILE, MOQE_DEFAULT_COSTS, plan

    recipe = {"model": "tiny-mixtral", "calibration": {"source": "random", "samples": 4, "seq_len": 32},
              "eval": {"source": "random", "tasks": [], "ppl_windows": 2, "seq_len": 32},
              "moqe": {"variants": [{"weights": {"bits": 2, "group_size": 16}, "techniques": ["rtn"]},
                                    {"weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}],
                       "train_samples": 8, "eval_samples": 4, "epochs": 2}}
    for attempt in range(2):
        seen: list[tuple[str, float]] = []
        run(recipe, RunContext(zoo_dir=tiny_zoo, cache_dir=tmp_path,
                               progress=lambda stage, f: seen.append((stage, f))))
        fractions = [f for _, f in seen]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0.0 <= fractions[0]
        if attempt == 0:  # what the second run plans with
            costs = json.loads((tmp_path / FILE).read_text())["tiny-mixtral|moqe"]
    assert {"load", "fp_evaluate", "variants", "router"} <= set(costs)
    expected = plan({**MOQE_DEFAULT_COSTS, **costs}, {"fp_evaluate"}, MOQE_DEFAULT_COSTS)
    first_variant = next(f for stage, f in seen if stage.startswith("moqe: variant 1/"))
    router = next(f for stage, f in seen if stage == "moqe: train router")
    assert abs(first_variant - expected.span("variants")[0]) < 1e-9
    assert abs(router - expected.span("router")[0]) < 1e-9
