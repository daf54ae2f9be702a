"""HTML for one run as people read it: the progress bar (elapsed, ETA, attempt) and a summary card
(recipe, headline metrics beside FP, per-task accuracy, warnings, error). Every string goes through h()."""

from __future__ import annotations

from datetime import datetime, timezone

from moeq.app.escape import h
from moeq.app.progress_view import fmt_duration
from moeq.app.run_label import bits_text, seed_text

ACTIVE = ("queued", "running")


def duration_s(run: dict) -> float | None:
    """Seconds from start to finish (or to now while running)."""
    if not run.get("started_at"):
        return None
    start = datetime.fromisoformat(run["started_at"])
    end = datetime.fromisoformat(run["finished_at"]) if run.get("finished_at") else datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def progress_html(run: dict, info: dict | None = None) -> str:
    """The bar; `info` (moeq.db.repository.progress.progress_info) adds elapsed time, ETA and the attempt."""
    pct = int(round(100 * (run.get("progress") or 0)))
    color = {"failed": "#d62728", "cancelled": "#7f7f7f", "succeeded": "#2ca02c"}.get(run["status"], "#1f77b4")
    err = run.get("error")
    detail = f"<br><b>{h(err['type'])}</b>: {h(err['message'])}" if err else ""
    timing = ""
    if info and run["status"] == "running":
        timing = f" · elapsed {fmt_duration(info.get('elapsed_s'))} · ETA {fmt_duration(info.get('eta_s'))}"
        if info.get("attempt", 0) > 1:
            timing += f" · attempt {info['attempt']} (the first worker was lost; continuing)"
    elif run["status"] in ("succeeded", "failed", "cancelled") and duration_s(run) is not None:
        timing = f" · took {fmt_duration(duration_s(run))}"
    return (f"<div id='run-progress' data-run='{h(run['run_id'])}' data-status='{h(run['status'])}' "
            f"data-progress='{pct}'><div style='background:#eee;border-radius:4px;width:100%'>"
            f"<div style='width:{pct}%;background:{color};color:white;padding:2px 6px;border-radius:4px;"
            f"white-space:nowrap;transition:width 0.8s linear'>{pct}%</div></div>"
            f"<small>{h(run['status'])} — {h(run.get('stage') or '')}{h(timing)}{detail}</small></div>")


def _f(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _peak_memory(run: dict) -> str:
    """'host 900 MB, GPU 1,204 MB' (GPU '-' on a CPU run)."""
    host, dev = run.get("peak_host_rss_mb"), run.get("peak_device_mb")
    return f"host {'-' if host is None else f'{host:,.0f} MB'}, GPU {'-' if dev is None else f'{dev:,.0f} MB'}"


def card_html(run: dict) -> str:
    """Summary card: what ran, how it did against FP, per task, and anything to worry about."""
    r = run.get("result") or {}
    m = r.get("metrics") or {}
    rows = [("model", run.get("model")), ("recipe", run.get("recipe_summary")),
            ("bits", bits_text(run) + " — all weights; the recipe's nominal bits beside"), ("seed", seed_text(run)),
            ("who", f"{run.get('user')} / {run.get('project')}"),
            ("created", (run.get("created_at") or "")[:19].replace("T", " ") + " UTC"),
            ("duration", (fmt_duration(duration_s(run)) + (" so far" if run.get("status") in ACTIVE else ""))
             if duration_s(run) is not None else "-"),
            ("worker", f"{run.get('worker_host') or '-'} ({run.get('device') or '-'}), attempt {run.get('attempts')}"),
            ("peak memory", _peak_memory(run))]
    if run.get("tags"):
        rows.append(("tags", ", ".join(run["tags"])))
    head = "".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in rows)
    warn = "".join(f"<div class='moeq-warn'>⚠ {h(w)}</div>" for w in r.get("warnings") or [])
    err = run.get("error")
    if err:
        warn += f"<div class='moeq-err'><b>{h(err['type'])}</b>: {h(err['message'])}</div>"
    metrics = ""
    if r:
        b = r.get("bits") or {}
        routing = m.get("routing") or {}
        mrows = [("average accuracy", _f(m.get("avg_accuracy")), _f(m.get("fp_avg_accuracy"))),
                 ("perplexity", _f(m.get("perplexity")), _f(m.get("fp_perplexity"))),
                 ("KL(FP‖Q), nats/token", _f(m.get("kl"), ".4f"), "0"),
                 ("routing top-k agreement", _f(routing.get("mean_topk_agreement")), "1"),
                 ("average weight bits", _f(b.get("avg_weight_bits")), "16")]
        mrows += [(f"accuracy {t['name']}", _f(t["acc"]), _f(t["fp_acc"])) for t in r.get("tasks", [])]
        body = "".join(f"<tr><th>{h(a)}</th><td>{h(q)}</td><td>{h(fp)}</td></tr>" for a, q, fp in mrows)
        metrics = f"<table class='moeq-card'><tr><th></th><th>quantized</th><th>FP</th></tr>{body}</table>"
    style = ("<style>.moeq-card th,.moeq-card td{padding:1px 8px;text-align:left;white-space:nowrap}"
             ".moeq-warn{background:#fff3cd;border:1px solid #e0b000;padding:4px 8px;margin:4px 0}"
             ".moeq-err{background:#fde2e2;border:1px solid #d62728;padding:4px 8px;margin:4px 0}"
             ".moeq-cards{display:flex;gap:24px;flex-wrap:wrap}</style>")
    return (f"{style}<div id='run-card' data-run='{h(run['run_id'])}'><b>run {h(run['run_id'])}</b> — "
            f"{h(run['status'])}{warn}<div class='moeq-cards'><table class='moeq-card'>{head}</table>{metrics}</div></div>")
