"""Compare tab: 2–N runs side by side — metrics against a baseline run (deltas, best marked), recipe
differences, accuracy, routing per layer, per-expert heatmaps of every run on one colour scale plus
their differences from the baseline, the bits trade-off with the Pareto front, expert load."""

from __future__ import annotations

import gradio as gr

from moeq.app import charts, compare_charts
from moeq.app.compare_summary import metrics_html
from moeq.app.compare_table import compare_html
from moeq.app.escape import h
from moeq.app.paired_view import groups_html, paired_html
from moeq.contract.limits import check_compare_count
from moeq.contract.stats import against_baseline
from moeq.app.services import AppServices

FIELD_CHOICES = [(compare_charts.FIELDS[f][0], f) for f in compare_charts.FIELDS]


def accuracy_bars(runs: list[dict]):
    fig = charts.accuracy_bars(runs)
    fig.update_layout(legend={"orientation": "h", "y": -0.3}, xaxis_title="task", xaxis_tickangle=-30,
                      yaxis_title="accuracy (fraction correct)", margin={"b": 120})
    return fig


_PAIRED: dict[tuple, list] = {}


def paired_cached(ids: tuple[str, ...], base: str | None, runs: list[dict]) -> list[dict | None]:
    """Paired differences against `base`, kept for the last few comparisons (finished runs do not change)."""
    key = (ids, base)
    if key in _PAIRED:
        return _PAIRED[key]
    out = against_baseline(runs, base)
    if all(r.get("status") not in ("queued", "running") for r in runs):
        if len(_PAIRED) > 16:
            _PAIRED.pop(next(iter(_PAIRED)))
        _PAIRED[key] = out
    return out


def build(svc: AppServices) -> dict:
    with gr.Row():
        runs_in = gr.Textbox(label="run ids to compare (comma or space separated; prefixes of 8 are fine) — or tick "
                             "runs in the Runs tab and press 'Compare selected'", elem_id="compare-ids", scale=4)
        go_btn = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=1)
    message = gr.Markdown(elem_id="compare-message")
    baseline = gr.Dropdown(label="baseline run (deltas and the difference heatmaps are against it)", choices=[],
                           elem_id="compare-baseline")
    metrics = gr.HTML(elem_id="compare-metrics-box")
    paired_box = gr.HTML(elem_id="compare-paired-box")
    table = gr.HTML(elem_id="compare-table")
    with gr.Row():
        acc = gr.Plot(label="accuracy", elem_id="plot-accuracy")
        routing = gr.Plot(label="routing agreement", elem_id="plot-routing")
    with gr.Row():
        field = gr.Dropdown(FIELD_CHOICES, value="bits", label="per-expert quantity", elem_id="compare-field")
        load_run = gr.Dropdown(label="expert load of run", choices=[])
        load_layer = gr.Number(None, label="expert-load layer (empty = first MoE layer)", precision=0)
    heat = gr.Plot(label="layer × expert, all runs on one colour scale", elem_id="plot-heatmap")
    heat_diff = gr.Plot(label="difference from the baseline run", elem_id="plot-heatmap-diff")
    caption = gr.Markdown(elem_id="compare-heatmap-caption")  # what the heatmaps above show (follows the field)
    with gr.Row():
        trade_acc = gr.Plot(label="accuracy vs bits", elem_id="plot-pareto-acc")
        trade_kl = gr.Plot(label="KL vs bits", elem_id="plot-pareto-kl")
    load = gr.Plot(label="expert load FP vs quantized", elem_id="plot-load")
    state = gr.State([])

    def resolve(text: str, who: str) -> list[str]:
        refs = [t for t in (text or "").replace(",", " ").split() if t]
        check_compare_count(len(refs))  # before looking any of them up
        return [svc.resolve(who, t) for t in refs]

    outputs = [message, baseline, metrics, table, acc, routing, field, heat, heat_diff, load_run, load, trade_acc,
               trade_kl, state, caption]

    def field_caption(f: str) -> str:
        title, unit, _, definition = compare_charts.FIELDS.get(f, ("", "", "", ""))
        return f"<small>heatmaps above: {h(title)} ({h(unit)}) — {h(definition)}</small>" if title else ""

    def compare(text, request: gr.Request):
        who = svc.user_of(request)
        try:
            ids = resolve(text, who)
            if len(ids) < 2:
                raise ValueError("choose at least two runs")
            runs = svc.compare(who, ids, paired=False)
        except Exception as exc:  # said once, and in place of every chart
            note = compare_charts.message_figure(f"nothing to compare: {exc}")
            return (f"⚠ {h(exc)}", gr.update(choices=[], value=None), "", "", note, note, gr.update(), note, note,
                    gr.update(choices=[], value=None), note, note, note, [], "")
        model_runs = svc.model_runs(who, runs[0]["model"])
        ids_set = {r["run_id"] for r in runs}
        first = runs[0]["run_id"]
        f = compare_charts.default_field(runs)
        choices = [(charts.run_label(r), r["run_id"]) for r in runs]
        models = sorted({r["model"] for r in runs})
        differ = f" — ⚠ {len(models)} different models: their metrics are not directly comparable" \
            if len(models) > 1 else ""
        return (f"comparing {len(runs)} runs of {h(', '.join(models))}{differ}",
                gr.update(choices=choices, value=first), metrics_html(runs, first), compare_html(runs),
                accuracy_bars(runs), compare_charts.routing_lines(runs), gr.update(value=f),
                compare_charts.heatmaps(runs, f), compare_charts.heatmap_differences(runs, f, first),
                gr.update(choices=choices, value=first), charts.expert_load(runs[0]),
                compare_charts.bits_tradeoff(model_runs, "avg_accuracy", ids_set),
                compare_charts.bits_tradeoff(model_runs, "kl", ids_set), runs, field_caption(f))

    def paired(base, runs):  # after the page: bootstrap intervals take a moment per run
        if not runs:
            return ""
        return paired_html(runs, paired_cached(tuple(r["run_id"] for r in runs), base, runs)) + groups_html(runs)

    go_btn.click(compare, runs_in, outputs).then(paired, [baseline, state], paired_box)
    runs_in.submit(compare, runs_in, outputs).then(paired, [baseline, state], paired_box)

    def redraw_heat(f, base, runs):
        if not runs or f not in compare_charts.FIELDS:
            return gr.update(), gr.update()
        return compare_charts.heatmaps(runs, f), compare_charts.heatmap_differences(runs, f, base)

    def redraw_base(base, runs):
        return metrics_html(runs, base) if runs else ""

    def redraw_load(run_id, layer, runs):
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is None:
            return compare_charts.message_figure("choose a run")
        return charts.expert_load(run, None if layer is None else int(layer))

    field.change(redraw_heat, [field, baseline, state], [heat, heat_diff])
    field.change(field_caption, field, caption)
    baseline.change(redraw_heat, [field, baseline, state], [heat, heat_diff])
    baseline.change(redraw_base, [baseline, state], metrics)
    baseline.change(paired, [baseline, state], paired_box)
    for comp in (load_run, load_layer):
        comp.change(redraw_load, [load_run, load_layer, state], load)
    return {"runs_in": runs_in, "compare": compare, "outputs": outputs, "paired": paired}
