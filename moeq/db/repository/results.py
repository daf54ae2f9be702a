"""Store a finished run's result (one transaction) and render runs back into result dicts.

The db keeps the result JSON whole (`runs.result`) plus the headline columns the runs table filters and
sorts on; every reader gets the result through `result_json` / `run_to_dict`, in the current shape
(moeq.db.repository.result_shape)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from moeq.db.models import Run, utcnow
from moeq.db.repository.result_shape import normalize_result
from moeq.db.repository.runs import Superseded, aware, get_run, owns


def _finite(x):
    return x if isinstance(x, (int, float)) and x == x and abs(x) != float("inf") else None


def sanitize(obj):
    """JSON-safe copy: NaN/Inf become null, tuples become lists, unknown objects become strings."""
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, float):
        return _finite(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def store_result(s: Session, run_id: str, result: dict, attempt: int | None = None) -> Run:
    """Store `result` and its headline columns and mark the run succeeded — all or nothing (caller's
    transaction). With `attempt`, refuse (Superseded) unless that attempt still owns the running run."""
    run = get_run(s, run_id)
    if attempt is not None and not owns(run, attempt):
        raise Superseded(f"run {run_id} attempt {attempt} was superseded (now {run.status}, attempt "
                         f"{run.attempts}); its result is discarded")
    m = result.get("metrics", {})
    routing = m.get("routing") or {}
    run.result = sanitize(result)
    run.status, run.progress, run.stage, run.finished_at = "succeeded", 1.0, "done", utcnow()
    run.avg_weight_bits = _finite(result.get("bits", {}).get("avg_weight_bits"))
    run.avg_accuracy = _finite(m.get("avg_accuracy"))
    run.perplexity = _finite(m.get("perplexity"))
    run.kl = _finite(m.get("kl"))
    run.mean_topk_agreement = _finite(routing.get("mean_topk_agreement"))
    run.device = result.get("environment", {}).get("device", run.device)
    return run


def nominal_bits(recipe: dict | None) -> str | None:
    """The recipe's weight bits as named ('W3', 'W3 mixed 2-4 avg 3.0', MoQE 'W2/W3'), None when unknown."""
    recipe = recipe or {}
    if isinstance(recipe.get("moqe"), dict):
        bits = sorted({v["weights"]["bits"] for v in recipe["moqe"].get("variants") or []
                       if isinstance(v, dict) and isinstance(v.get("weights"), dict) and "bits" in v["weights"]})
        return "/".join(f"W{b}" for b in bits) if bits else None
    bits = (recipe.get("weights") or {}).get("bits")
    if bits is None:
        return None
    alloc = recipe.get("allocation")
    if isinstance(alloc, dict) and alloc.get("tiers"):
        tiers = alloc["tiers"]
        avg = alloc.get("avg_bits")
        avg = f"{avg:g}" if isinstance(avg, (int, float)) else avg
        others = f", others W{alloc['other_bits']}" if alloc.get("other_bits") is not None else ""
        return f"W{avg} mixed W{min(tiers)}-W{max(tiers)}{others}"
    return f"W{bits}"


def run_to_dict(run: Run, with_result: bool = True) -> dict:
    """The run as the CLI/web app show it; `result` holds the DESIGN §4.3 dict when finished."""
    d = {
        "run_id": run.id, "status": run.status, "model": run.model_ref, "recipe": run.recipe,
        "recipe_summary": run.recipe_summary, "techniques": run.techniques, "progress": run.progress,
        "stage": run.stage, "user": run.user.name if run.user else None,
        "project": run.project.name if run.project else None,
        "worker_host": run.worker_host, "device": run.device, "attempts": run.attempts,
        "created_at": aware(run.created_at).isoformat() if run.created_at else None,
        "started_at": aware(run.started_at).isoformat() if run.started_at else None,
        "finished_at": aware(run.finished_at).isoformat() if run.finished_at else None,
        "code_version": run.code_version, "notes": run.notes, "tags": [t for t in run.tags.split(",") if t],
        "avg_weight_bits": run.avg_weight_bits, "avg_accuracy": run.avg_accuracy, "perplexity": run.perplexity,
        "kl": run.kl, "mean_topk_agreement": run.mean_topk_agreement, "cancel_requested": run.cancel_requested,
        # peak memory of the run (device: None on CPU runs), from the stored result
        "peak_host_rss_mb": (run.result or {}).get("peak_host_rss_mb"),
        "peak_device_mb": (run.result or {}).get("peak_device_mb"),
        # what a run is named by beside its measured all-weights bits: the recipe's nominal bits and seed
        "nominal_bits": nominal_bits(run.recipe), "seed": (run.recipe or {}).get("seed"),
        "archived": bool(run.archived), "origin": run.origin,
    }
    if run.error_type:
        d["error"] = {"type": run.error_type, "message": run.error_message}
    if with_result and run.result is not None:
        d["result"] = result_json(run)
    return d


def result_json(run: Run) -> dict:
    """DESIGN §4.3 result dict for a run (finished or not), in the current result shape, with its
    run_id and status."""
    base = {"run_id": run.id, "status": run.status}
    if run.result:
        return {**normalize_result(run.result), **base}
    out = {**base, "model": run.model_ref, "recipe": run.recipe}
    if run.error_type:
        out["error"] = {"type": run.error_type, "message": run.error_message}
    return out
