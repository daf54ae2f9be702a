"""Launch tab: model, bits, techniques, calibration and evaluation → recipe JSON → queue a run."""

from __future__ import annotations

import json

import gradio as gr

from app.escape import h
from app.recipe_form import PRESET_CHOICES, TECHNIQUE_CHOICES, LaunchForm, form_to_recipe
from app.services import AppServices


def build(svc: AppServices) -> dict:
    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(svc.model_choices(local=False), value="testbed-mixtral",  # local ones: after login
                                label="model (zoo name or local path)",
                                allow_custom_value=True, elem_id="launch-model")
            model_info = gr.Markdown(svc.describe("testbed-mixtral"), elem_id="launch-model-info")
            with gr.Row():
                wbits = gr.Dropdown([2, 3, 4, 8, 16], value=4, label="weight bits")
                group = gr.Dropdown(["128", "64", "32", "channel"], value="128", label="group size",
                                    allow_custom_value=True)
                sym = gr.Checkbox(True, label="symmetric")
                abits = gr.Dropdown([16, 8, 4], value=16, label="activation bits")
                router = gr.Dropdown(["fp", "quantize", "align", "gptq"], value="fp", label="router")
            preset = gr.Dropdown(list(PRESET_CHOICES), value="none", label="preset")
            techniques = gr.CheckboxGroup(list(TECHNIQUE_CHOICES), value=["gptq"], label="techniques")
            with gr.Accordion("calibration", open=False):
                with gr.Row():
                    source = gr.Textbox("auto", label="source (auto | random | file:<path>)")
                    samples = gr.Number(128, label="samples", precision=0)
                    seq_len = gr.Number(512, label="sequence length", precision=0)
                    sampler = gr.Dropdown(["uniform", "ebss"], value="uniform", label="sampler")
                    balance = gr.Number(0, label="EAQuant balance r (0 = off)")
            with gr.Accordion("mixed precision (router-norm allocation)", open=False):
                with gr.Row():
                    alloc = gr.Dropdown(["none", "router_norm", "random", "uniform"], value="none", label="method")
                    avg_bits = gr.Number(3.0, label="average bits")
                    tiers = gr.Textbox("2,3,4", label="tiers")
            with gr.Accordion("MoQE (mixture of quantized variants)", open=False):
                moqe = gr.Textbox("", label="variants at the bits above, ';'-separated, e.g. "
                                  "'rtn; gptq; rotation+gptq; rtn+clip' (empty = off; 'path:<saved dir>' reuses one)")
            with gr.Accordion("evaluation", open=False):
                with gr.Row():
                    tasks = gr.Textbox("testbed", label="tasks (testbed, file:<jsonl>, lm_eval:<task>)")
                    limit = gr.Number(0, label="items per task (0 = all)", precision=0)
                    seed = gr.Number(0, label="seed", precision=0)
        with gr.Column(scale=2):
            recipe_json = gr.Code(language="json", label="recipe (editable; this is what gets queued)",
                                  elem_id="launch-recipe")
            problem = gr.Markdown(elem_id="launch-problem")
            project = gr.Dropdown(label="project", choices=[], allow_custom_value=False)
            save = gr.Checkbox(False, label="save the quantized model (artifacts)")
            launch = gr.Button("Launch", variant="primary", elem_id="launch-button")
            launched = gr.Markdown(elem_id="launch-result")

    form_inputs = [model, wbits, group, sym, abits, router, preset, techniques, source, samples, seq_len, sampler,
                   balance, alloc, avg_bits, tiers, tasks, limit, seed, moqe]

    def render(*values):
        form = LaunchForm(*values)
        try:
            recipe = form_to_recipe(form)
        except ValueError as exc:
            return gr.update(), f"⚠ {h(exc)}"
        msg = svc.validate(recipe)
        return json.dumps(recipe, indent=1), (f"⚠ {h(msg)}" if msg else "✓ recipe is valid")

    for comp in form_inputs:
        comp.change(render, form_inputs, [recipe_json, problem])
    model.change(lambda ref: h(svc.describe(ref)), model, model_info)

    def on_launch(text, proj, save_model, request: gr.Request):
        try:
            recipe = json.loads(text)
        except (json.JSONDecodeError, TypeError, RecursionError) as exc:
            return f"⚠ recipe is not valid JSON: {h(exc)}"
        msg = svc.validate(recipe, svc.user_of(request))
        if msg:
            return f"⚠ not launched: {h(msg)}"
        try:
            run_id = svc.launch(svc.user_of(request), proj, recipe, bool(save_model))
        except Exception as exc:  # shown to the user; nothing was queued
            return f"⚠ not launched: {h(exc)}"
        return f"✓ queued run `{run_id}` — follow it in the Runs tab"

    launch.click(on_launch, [recipe_json, project, save], launched)
    return {"recipe_json": recipe_json, "project": project, "render": render, "form_inputs": form_inputs,
            "problem": problem, "model": model}
