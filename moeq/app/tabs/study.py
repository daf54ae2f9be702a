"""Studies tab: the sweep form (base recipe, grid axes, seeds → the grid and its cost estimate → one
study queued), the studies list, and a study page: progress "n of N", the grid as mean ± sd over
seeds, accuracy/KL-vs-bits with error bars and the Pareto front, "best recipe at ≤ B bits"."""

from __future__ import annotations

import json

import gradio as gr

from moeq.app.escape import h
from moeq.app.services import AppServices
from moeq.app.study_services import StudyServices
from moeq.app.study_view import best_text, pareto_figure, point_label, study_html

BASE = {"model": "testbed-mixtral", "weights": {"group_size": 64}, "calibration": {"samples": 32, "seq_len": 256},
        "eval": {"tasks": ["testbed"], "limit": 50, "ppl_windows": 8, "seq_len": 256}}


def _list_html(rows: list[dict]) -> str:
    if not rows:
        return "<i>no studies yet</i>"
    body = "".join(
        f"<tr><td>{h(r['study_id'][:8])}</td><td>{h(r['name'])}</td><td>{h(r['state'])}</td><td>{h(r['progress'])}</td>"
        f"<td>{h(r['model'])}</td><td>{h(' × '.join(f'{k} {len(v)}' for k, v in r['axes'].items()))}</td>"
        f"<td>{h((r['created_at'] or '')[:19])}</td></tr>" for r in rows)
    return ("<table id='study-list'><tr><th>study</th><th>name</th><th>state</th><th>progress</th><th>model</th>"
            f"<th>axes</th><th>created</th></tr>{body}</table>")


def build(svc: AppServices) -> dict:
    studies = StudyServices(svc)
    gr.Markdown("### New study (sweep)")
    with gr.Row():
        with gr.Column(scale=3):
            base = gr.Code(json.dumps(BASE, indent=1), language="json", label="base recipe", elem_id="sweep-base")
        with gr.Column(scale=2):
            axes = gr.Textbox("bits=W2A16,W4A16\ntechniques=rtn,gptq", lines=4, elem_id="sweep-axes",
                              label="grid axes, one per line: NAME=V1,V2 (bits, techniques with '+' for a "
                                    "combination, group-size, samples, or a dotted recipe key)")
            seeds = gr.Textbox("0,1", label="seeds (every grid point repeated over them)", elem_id="sweep-seeds")
            name = gr.Textbox("", label="study name", elem_id="sweep-name")
            project = gr.Dropdown(label="project", choices=[], allow_custom_value=False, elem_id="sweep-project")
            with gr.Row():
                plan_btn = gr.Button("Show grid and estimate", elem_id="sweep-plan")
                launch_btn = gr.Button("Launch study", variant="primary", elem_id="sweep-launch")
    plan_out = gr.Markdown(elem_id="sweep-plan-out")
    gr.Markdown("### Studies")
    with gr.Row():
        study_in = gr.Textbox(label="study id (or a prefix of 8)", elem_id="study-id", scale=3)
        show_btn = gr.Button("Show", elem_id="study-show", scale=1)
        cancel_btn = gr.Button("Cancel study", variant="stop", elem_id="study-cancel", scale=1)
        rerun_btn = gr.Button("Re-run failed", elem_id="study-rerun", scale=1)
        list_btn = gr.Button("Refresh list", elem_id="study-refresh", scale=1)
    message = gr.Markdown(elem_id="study-message")
    grid = gr.HTML(elem_id="study-page")
    with gr.Row():
        max_bits = gr.Number(3.0, label="best recipe at ≤ B average weight bits", elem_id="study-max-bits")
        best = gr.Markdown(elem_id="study-best")
    with gr.Row():
        pareto_acc = gr.Plot(label="accuracy vs bits", elem_id="study-pareto-acc")
        pareto_kl = gr.Plot(label="KL vs bits", elem_id="study-pareto-kl")
    listing = gr.HTML(elem_id="study-list-box")
    state = gr.State({})

    def plan(base_text, axes_text, seeds_text, request: gr.Request):
        try:
            ax, points, recipes, estimate, known = studies.plan(svc.user_of(request), base_text, axes_text, seeds_text)
        except Exception as exc:
            return f"⚠ {h(exc)}"
        from moeq.contract.recipe import recipe_summary

        cost = ("unknown (no succeeded run of this model and these techniques is recorded yet)" if estimate is None
                else f"{estimate / 60:.1f} worker-minutes (from recorded runs of {known} of the {len(points)} points)")
        lines = [f"**{len(points)} runs**: {h(' × '.join(f'{k} {len(v)}' for k, v in ax.items()))}; "
                 f"estimated cost {h(cost)}", ""]
        lines += [f"- {h(point_label(p))}: `{h(recipe_summary(r))}`" for p, r in zip(points, recipes)]
        return "\n".join(lines)

    def launch(base_text, axes_text, seeds_text, name_text, proj, request: gr.Request):
        try:
            sid = studies.launch(svc.user_of(request), proj, name_text, base_text, axes_text, seeds_text)
        except Exception as exc:
            return f"⚠ not launched: {h(exc)}", gr.update()
        return f"✓ study `{h(sid[:8])}` queued (`{h(sid)}`)", sid[:8]

    def show(ref, bits, request: gr.Request):
        try:
            d = studies.show(svc.user_of(request), ref)
        except Exception as exc:
            return f"⚠ {h(exc)}", "", "", gr.update(), gr.update(), {}
        return (f"study {h(d['study_id'][:8])}: {h(d['state'])}, {h(d['progress'])} finished", study_html(d),
                h(best_text(d, bits)), pareto_figure(d, "avg_accuracy"), pareto_figure(d, "kl"), d)

    def act(fn, verb):
        def run(ref, request: gr.Request):
            try:
                n = fn(svc.user_of(request), ref)
            except Exception as exc:
                return f"⚠ {h(exc)}"
            return f"{verb} {n} run(s)"
        return run

    def refresh(request: gr.Request):
        try:
            return _list_html(studies.list(svc.user_of(request)))
        except Exception as exc:
            return f"⚠ {h(exc)}"

    page = [message, grid, best, pareto_acc, pareto_kl, state]
    plan_btn.click(plan, [base, axes, seeds], plan_out)
    launch_btn.click(launch, [base, axes, seeds, name, project], [plan_out, study_in]).then(
        show, [study_in, max_bits], page).then(refresh, None, listing)
    show_btn.click(show, [study_in, max_bits], page)
    study_in.submit(show, [study_in, max_bits], page)
    cancel_btn.click(act(studies.cancel, "cancel requested for"), study_in, message).then(
        show, [study_in, max_bits], page)
    rerun_btn.click(act(studies.rerun, "queued again"), study_in, message).then(show, [study_in, max_bits], page)
    list_btn.click(refresh, None, listing)
    max_bits.change(lambda d, b: h(best_text(d, b)) if d else "", [state, max_bits], best)
    return {"project": project, "refresh": refresh, "listing": listing, "plan": plan, "launch": launch, "show": show}
