"""Assemble the result dict from one run's evaluations and quantization state."""

from __future__ import annotations

import platform
import resource
import sys

import torch

from moeq.contract import __version__
from moeq.contract.describe import ModelInfo
from moeq.quant_core.evaluate.compare import routing_report, token_kl
from moeq.quant_core.evaluate.outcomes import task_outcomes, window_outcomes
from moeq.quant_core.evaluate.run import EvalResult
from moeq.quant_core.memory import peaks
from moeq.quant_core.quantized import QuantState
from moeq.contract.recipe import Recipe


def environment(device: torch.device) -> dict:
    import transformers

    env = {"device": str(device), "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
           "moeq": __version__, "python": sys.version.split()[0], "host": platform.node()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"


def result_metrics(recipe: Recipe, fp: EvalResult, q: EvalResult, num_experts: dict[int, int]) -> dict:
    """Metrics of evaluation `q` against the FP reference `fp` (what the recipe's eval spec asks for)."""
    m: dict = {
        "accuracy": q.accuracy(), "fp_accuracy": fp.accuracy(),
        "accuracy_norm": {t.name: t.acc_norm for t in q.tasks if t.acc_norm is not None},
        "accuracy_stderr": {t.name: t.stderr for t in q.tasks},
        "avg_accuracy": q.avg_accuracy(), "fp_avg_accuracy": fp.avg_accuracy(),
        "kl": token_kl(fp.probe, q.probe),
    }
    if recipe.eval.perplexity:
        m["perplexity"] = q.probe.perplexity
        m["fp_perplexity"] = fp.probe.perplexity
    if recipe.eval.routing:
        m["routing"] = routing_report(fp.probe, q.probe, num_experts)
    return m


def expert_rows(state: QuantState, info_experts: dict[int, int], group_size: int | None) -> list[dict]:
    """Every per-expert fact of a run, one row per (layer, expert) — the only place the result keeps them."""
    bits = state.bits_summary()["experts"]
    fallback = {(f["layer"], f["expert"]): f for f in state.fallbacks}
    rows = []
    for layer, n in info_experts.items():
        tokens = state.tokens_per_expert.get(layer)
        errors = state.expert_error.get(layer)
        for e in range(n):
            fb = fallback.get((layer, e)) or {}
            rows.append({"layer": layer, "expert": e, "bits": bits.get(str(layer), {}).get(str(e)),
                         "group_size": group_size, "calib_tokens": None if tokens is None else tokens[e],
                         "weight_error": None if errors is None else errors[e],
                         "fallback": fb.get("fallback"), "fallback_reason": fb.get("reason")})
    return rows


def bits_report(state: QuantState) -> dict:
    """The run's bit averages (per-expert bits live in expert_stats)."""
    return {k: v for k, v in state.bits_summary().items() if k != "experts"}


def build_result(recipe: Recipe, info: ModelInfo, fp: EvalResult, q: EvalResult, state: QuantState,
                 num_experts: dict[int, int], timings: dict, device: torch.device, calibration: dict) -> dict:
    """The result of one quantized model (its bits and per-expert facts from `state`)."""
    diagnostics = dict(state.diagnostics)
    if state.transforms:  # DuQuant / EAQuant runs say which transforms ran
        from moeq.quant_core.algorithms.duquant import diagnostics as transform_diagnostics

        diagnostics["transforms"] = transform_diagnostics(state)
    return assemble_result(recipe, info, fp, q, num_experts, bits=bits_report(state),
                           expert_stats=expert_rows(state, num_experts, recipe.weights.group_size),
                           calibration=calibration, timings=timings, device=device, diagnostics=diagnostics)


def assemble_result(recipe: Recipe, info: ModelInfo, fp: EvalResult, q: EvalResult, num_experts: dict[int, int],
                    *, bits: dict, expert_stats: list[dict], calibration: dict, timings: dict, device: torch.device,
                    diagnostics: dict) -> dict:
    """The result shape every run returns (tests/contract.py checks it; moeq.db.repository.result_shape reads
    older stored results into it): evaluation `q` against the FP reference `fp`, plus the facts given."""
    peak, kind = peak_memory_mb(device)
    return {
        "model": recipe.model,
        "model_info": info.to_dict(),
        "recipe": recipe.to_dict(),
        "metrics": result_metrics(recipe, fp, q, num_experts),
        "tasks": [{"name": t.name, "kind": t.kind, "acc": t.acc, "acc_norm": t.acc_norm, "stderr": t.stderr,
                   "n": t.n, "chance": t.chance, "fp_acc": f.acc, **task_outcomes(t)} for t, f in zip(q.tasks, fp.tasks)],
        "windows": window_outcomes(fp.probe, q.probe),
        "bits": bits,
        "calibration": dict(calibration),
        "expert_stats": expert_stats,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "environment": environment(device),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_kind": kind,
        **peaks(device),  # peak_host_rss_mb, peak_device_mb (None on CPU runs)
        "diagnostics": diagnostics,
    }
