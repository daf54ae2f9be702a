"""Assemble the Gradio workbench from one builder per tab."""

from __future__ import annotations

import gradio as gr

from moeq.app.services import AppServices
from moeq.app.tabs import compare, launch, runs, study, team

TITLE = "moeq — MoE quantization workbench"


def build_ui(svc: AppServices) -> gr.Blocks:
    with gr.Blocks(title=TITLE, fill_width=True) as demo:
        gr.Markdown(f"## {TITLE}\nQuantize Mixture-of-Experts models and see what each recipe does to the experts "
                    "and the router.")
        with gr.Tabs() as tabs:
            with gr.Tab("Launch", id="launch"):
                launch_parts = launch.build(svc)
            with gr.Tab("Runs", id="runs"):
                runs_parts = runs.build(svc, launch_parts)
            with gr.Tab("Compare", id="compare"):
                compare_parts = compare.build(svc)
            with gr.Tab("Studies", id="studies"):
                study_parts = study.build(svc)
            with gr.Tab("Team", id="team"):
                team_parts = team.build(svc)
        form = [*launch_parts["form_inputs"], launch_parts["kept"]]
        runs_parts["rerun"].click(runs_parts["do_rerun"], runs_parts["selected"], [*form, tabs]).then(
            launch_parts["render"], launch_parts["render_inputs"],
            [launch_parts["recipe_json"], launch_parts["problem"]])
        runs_parts["compare_sel"].click(runs_parts["compare_text"], runs_parts["pick"], compare_parts["runs_in"]).then(
            lambda: gr.Tabs(selected="compare"), None, tabs).then(
            compare_parts["compare"], compare_parts["runs_in"], compare_parts["outputs"])

        def open_linked_run(request: gr.Request):
            """`?run=ID` (the link of the Launch tab's "queued" message) opens that run in the Runs tab."""
            run = (dict(request.query_params).get("run") or "").strip() if request else ""
            return (run, gr.Tabs(selected="runs")) if run else (gr.update(), gr.update())

        demo.load(open_linked_run, None, [runs_parts["selected"], tabs])

        def study_projects(request: gr.Request):
            return team_parts["load"](request)[1]

        # one after the other: concurrent first visits would race to create the local user
        demo.load(team_parts["load"], None, [team_parts["who"], launch_parts["project"]]).then(
            study_projects, None, study_parts["project"]).then(study_parts["refresh"], None, study_parts["listing"])
        # per-user choices are filled in only after login: nothing about runs or local models is in
        # the page (or its API description) an anonymous visitor gets
        demo.load(runs_parts["load_filters"], None, runs_parts["model_filter"])
        demo.load(lambda: gr.update(choices=svc.model_choices()), None, launch_parts["model"])
        demo.load(launch_parts["render"], launch_parts["render_inputs"],
                  [launch_parts["recipe_json"], launch_parts["problem"]])
    return demo
