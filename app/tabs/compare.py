"""Compare tab: 2–N runs side by side — recipe differences, accuracy, routing per layer, per-expert
heatmaps, bits trade-off with the Pareto front across all runs of the model, expert load."""

from __future__ import annotations

import gradio as gr

from app import charts
from app.compare_table import compare_html
from app.escape import h
from app.services import AppServices


def build(svc: AppServices) -> dict:
    with gr.Row():
        runs_in = gr.Textbox(label="run ids to compare (comma or space separated; prefixes of 8 are fine)",
                             elem_id="compare-ids", scale=4)
        go = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=1)
    message = gr.Markdown(elem_id="compare-message")
    table = gr.HTML(elem_id="compare-table")
    with gr.Row():
        acc = gr.Plot(label="accuracy", elem_id="plot-accuracy")
        routing = gr.Plot(label="routing agreement", elem_id="plot-routing")
    with gr.Row():
        heat_run = gr.Dropdown(label="heatmaps for run", choices=[])
        heat_field = gr.Dropdown(list(charts.HEATMAP_FIELDS), value="bits", label="per-expert quantity")
        load_layer = gr.Number(None, label="expert-load layer (empty = first MoE layer)", precision=0)
    with gr.Row():
        heat = gr.Plot(label="layer × expert", elem_id="plot-heatmap")
        load = gr.Plot(label="expert load FP vs quantized", elem_id="plot-load")
    with gr.Row():
        trade_acc = gr.Plot(label="accuracy vs bits", elem_id="plot-pareto-acc")
        trade_kl = gr.Plot(label="KL vs bits", elem_id="plot-pareto-kl")
    state = gr.State([])

    def resolve(text: str, who: str) -> list[str]:
        return [svc.resolve(who, t) for t in text.replace(",", " ").split() if t]

    def compare(text, request: gr.Request):
        who = svc.user_of(request)
        try:
            ids = resolve(text, who)
            if len(ids) < 2:
                raise ValueError("choose at least two runs")
            runs = svc.compare(who, ids)
        except Exception as exc:  # shown in place of the charts
            empty = charts.go.Figure()
            return (f"⚠ {h(exc)}", "", empty, empty, gr.update(choices=[]), empty, empty, empty, empty, [])
        model_runs = svc.model_runs(who, runs[0]["model"])
        ids_set = {r["run_id"] for r in runs}
        first = runs[0]
        return (f"comparing {len(runs)} runs of {h(', '.join(sorted({r['model'] for r in runs})))}",
                compare_html(runs), charts.accuracy_bars(runs), charts.routing_lines(runs),
                gr.update(choices=[r["run_id"] for r in runs], value=first["run_id"]),
                charts.expert_heatmap(first, "bits"), charts.expert_load(first),
                charts.bits_tradeoff(model_runs, "avg_accuracy", ids_set),
                charts.bits_tradeoff(model_runs, "kl", ids_set), runs)

    go.click(compare, runs_in, [message, table, acc, routing, heat_run, heat, load, trade_acc, trade_kl, state])

    def redraw(run_id, field, layer, runs):
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is None:
            return charts.go.Figure(), charts.go.Figure()
        return charts.expert_heatmap(run, field), charts.expert_load(run, None if layer is None else int(layer))

    for comp in (heat_run, heat_field, load_layer):
        comp.change(redraw, [heat_run, heat_field, load_layer, state], [heat, load])
    return {"runs_in": runs_in}
