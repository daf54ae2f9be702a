"""Plain-text views of runs for the CLI: one run's summary, and 2–N runs side by side (per task)."""

from __future__ import annotations

from moeq.db.repository.result_shape import fallback_rows
from moeq.db.repository.results import nominal_bits


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _seed(r: dict):
    """The run's seed (run dicts carry it; a result has its recipe); '-' when unknown."""
    seed = r.get("seed", (r.get("recipe") or {}).get("seed"))
    return "-" if seed is None else seed


def warning_lines(r: dict) -> list[str]:
    return [f"WARNING {w}" for w in r.get("warnings") or []]


def format_summary(r: dict) -> str:
    """A finished result: the key metrics against FP, per-task accuracy, routing, bits, time. The
    recipe line is the summary stored with the run (`recipe_summary`), never a re-parse."""
    m = r.get("metrics") or {}
    info = r.get("model_info", {})
    recipe = r.get("recipe_summary") or str(r.get("recipe"))[:120]  # a result without its run row
    lines = [f"run {r.get('run_id') or '-'}  {r['status']}",
             f"model   {r['model']} ({info.get('family')}, {info.get('num_layers')} layers, "
             f"{info.get('num_experts')} experts, top-{info.get('top_k')})",
             f"recipe  {recipe}   seed {_seed(r)}"]
    lines += warning_lines(r)
    if "perplexity" in m:
        lines.append(f"ppl     {_fmt(m['perplexity'], '.3f')}  (FP {_fmt(m.get('fp_perplexity'), '.3f')})"
                     f"   KL(FP||Q) {_fmt(m.get('kl'))}")
    elif m.get("kl") is not None:
        lines.append(f"KL(FP||Q) {_fmt(m.get('kl'))}")
    routing = m.get("routing")
    if routing:
        per = " ".join(f"{a:.3f}" for a in routing["topk_agreement"])
        lines.append(f"routing top-k agreement {_fmt(routing['mean_topk_agreement'], '.3f')}  per layer: {per}")
    for t in r.get("tasks", []):
        lines.append(f"task    {t['name']:<18} acc {t['acc']:.3f}  (FP {t['fp_acc']:.3f}, "
                     f"Δ {t['acc'] - t['fp_acc']:+.3f}, chance {t['chance']:.2f}, n={t['n']})")
    if m.get("avg_accuracy") is not None:
        lines.append(f"avg acc {m['avg_accuracy']:.3f}  (FP {_fmt(m.get('fp_avg_accuracy'), '.3f')})")
    b = r.get("bits") or {}
    if b:
        nom = nominal_bits(r.get("recipe"))
        lines.append(f"bits    {b['avg_weight_bits']:.3f} avg bits over all quantized weights, "
                     f"{b['bits_per_param_with_overhead']:.3f} with scales/zeros"
                     + (f"  (recipe: nominal {nom})" if nom else ""))
        if b.get("avg_expert_bits") is not None:
            lines.append(f"        {b['avg_expert_bits']:.3f} avg bits over routed experts, "
                         f"{b['avg_expert_bits_with_overhead']:.3f} with scales/zeros")
    fb = fallback_rows(r)
    if fb:
        lines.append(f"calib   {len(fb)} expert(s) fell back: " + ", ".join(f"L{f['layer']}E{f['expert']}" for f in fb[:8]))
    timings = r.get("timings") or {}
    if timings:
        total = sum(v for v in timings.values() if isinstance(v, (int, float)))
        lines.append(f"time    {total:.1f}s: " + "  ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items()))
    if r.get("peak_host_rss_mb") is not None:
        dev = r.get("peak_device_mb")
        lines.append(f"memory  peak host RSS {r['peak_host_rss_mb']:.0f} MB, peak device "
                     + ("none (CPU run)" if dev is None else f"{dev:.0f} MB"))
    return "\n".join(lines)


def format_run(run: dict) -> str:
    """`moeq runs show`: the summary of a finished run, else its state (progress, stage, error)."""
    result = run.get("result")  # the stored result with its run_id and status (moeq.db.repository.results)
    if run["status"] == "succeeded" and result:
        return format_summary({**result, "recipe_summary": run.get("recipe_summary")})
    lines = [f"run {run['run_id']}  {run['status']}",
             f"model   {run['model']}",
             f"recipe  {run.get('recipe_summary')}   seed {_seed(run)}",
             f"user    {run.get('user')} / {run.get('project')}   created {(run.get('created_at') or '')[:19]}"]
    if run["status"] in ("queued", "running"):
        attempt = f" (attempt {run['attempts']})" if (run.get("attempts") or 0) > 1 else ""
        lines.append(f"progress {100 * (run.get('progress') or 0):.0f}%  {run.get('stage') or ''}{attempt}")
    if run.get("error"):
        lines.append(f"error   {run['error']['type']}: {run['error']['message']}")
    return "\n".join(lines)


def compare_rows(runs: list[dict]) -> list[tuple[str, list[str]]]:
    """(label, one cell per run): status, recipe, bits, every task's accuracy (with FP), averages,
    perplexity, KL, routing agreement and time."""
    results = [r.get("result") or {} for r in runs]
    rows: list[tuple[str, list[str]]] = [
        ("status", [r["status"] for r in runs]),
        ("model", [r["model"] for r in runs]),
        ("recipe", [r.get("recipe_summary") or "" for r in runs]),
        ("seed", [str(_seed(r)) for r in runs]),
        ("avg weight bits (nominal)", [f"{_fmt(r.get('avg_weight_bits'), '.3f')} ({r.get('nominal_bits') or '-'})"
                                       for r in runs]),
    ]
    tasks: list[str] = []
    for res in results:
        tasks += [t["name"] for t in res.get("tasks", []) if t["name"] not in tasks]
    for name in tasks:
        cells = []
        for res in results:
            t = next((t for t in res.get("tasks", []) if t["name"] == name), None)
            cells.append("-" if t is None else f"{t['acc']:.3f} (FP {t['fp_acc']:.3f})")
        rows.append((f"acc {name}", cells))
    rows += [
        ("avg accuracy", [_fmt(r.get("avg_accuracy"), ".3f") for r in runs]),
        ("perplexity", [_fmt(r.get("perplexity"), ".3f") for r in runs]),
        ("KL(FP||Q)", [_fmt(r.get("kl"), ".4f") for r in runs]),
        ("top-k agreement", [_fmt(r.get("mean_topk_agreement"), ".3f") for r in runs]),
        ("time (s)", [_fmt(sum((res.get("timings") or {}).values()) if res.get("timings") else None, ".1f")
                      for res in results]),
        ("warnings", [str(len(res.get("warnings") or [])) for res in results]),
    ]
    return rows


def format_compare(runs: list[dict], width: int = 26) -> str:
    rows = compare_rows(runs)
    label_w = max(len(label) for label, _ in rows) + 2
    head = " " * label_w + "".join(f"{r['run_id'][:8] + ' seed ' + str(_seed(r)):>{width}}" for r in runs)
    body = [f"{label:<{label_w}}" + "".join(f"{c[:width - 2]:>{width}}" for c in cells) for label, cells in rows]
    return "\n".join([head, *body])
