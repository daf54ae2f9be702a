"""Launch tab: model, bits, techniques, calibration and evaluation → recipe JSON → queue a run."""

from __future__ import annotations

import json

import gradio as gr

from app.escape import h
from app.form_check import model_problem, problems_markdown, read_form, recipe_errors
from app.recipe_fill import apply_overrides
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
                wbits = gr.Dropdown([2, 3, 4, 8, 16], value=4, label="weight bits", elem_id="launch-wbits")
                group = gr.Dropdown(["128", "64", "32", "channel"], value="128", label="group size", elem_id="launch-group",
                                    allow_custom_value=True)
                sym = gr.Checkbox(True, label="symmetric")
                abits = gr.Dropdown([16, 8, 4], value=16, label="activation bits", elem_id="launch-abits")
                router = gr.Dropdown(["fp", "quantize", "align", "gptq"], value="fp", label="router")
            preset = gr.Dropdown(list(PRESET_CHOICES), value="none", label="preset")
            techniques = gr.CheckboxGroup(list(TECHNIQUE_CHOICES), value=["gptq"], label="techniques", elem_id="launch-techniques")
            with gr.Accordion("calibration", open=False):
                with gr.Row():
                    source = gr.Textbox("auto", label="source (auto | random | file:<path>)")
                    samples = gr.Number(128, label="samples", precision=0, elem_id="launch-samples")
                    seq_len = gr.Number(512, label="sequence length", precision=0, elem_id="launch-seqlen")
                    sampler = gr.Dropdown(["uniform", "ebss"], value="uniform", label="sampler", elem_id="launch-sampler")
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
                    tasks = gr.Textbox("testbed", label="tasks (testbed, file:<jsonl>, lm_eval:<task>)",
                                       elem_id="launch-tasks")
                    limit = gr.Number(0, label="items per task (0 = all)", precision=0, elem_id="launch-limit")
                    seed = gr.Number(0, label="seed", precision=0, elem_id="launch-seed")
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
    kept = gr.State({})  # recipe values the form cannot express (from "Re-run with edits"), laid over it

    def render(*values):
        *form_values, overrides = values
        form, errors = read_form(LaunchForm(*form_values))
        try:
            recipe = apply_overrides(form_to_recipe(form), overrides)
        except ValueError as exc:  # e.g. an unknown MoQE variant word
            return gr.update(), problems_markdown([*errors, f"MoQE variants: {exc}"])
        errors += recipe_errors(recipe)
        problem = model_problem(recipe.get("model", ""), svc.settings.model_roots)
        if problem and not any(e.startswith("model:") for e in errors):
            errors.append(problem)
        if not errors:  # everything the queue would refuse (roots, limits, model config), in one line
            msg = svc.validate(recipe)
            if msg:
                errors.append(msg)
        notes = [f"from recipe (the form cannot show it; edit the JSON to change it): {h(', '.join(sorted(overrides)))}"] \
            if overrides else []
        return json.dumps(recipe, indent=1), problems_markdown([h(e) for e in errors], notes)

    for comp in form_inputs:
        comp.change(render, [*form_inputs, kept], [recipe_json, problem])
    model.change(lambda ref: h(svc.describe(ref)), model, model_info)

    def on_launch(text, proj, save_model, request: gr.Request):
        try:
            recipe = json.loads(text)
        except (json.JSONDecodeError, TypeError, RecursionError) as exc:
            return f"⚠ recipe is not valid JSON: {h(exc)}"
        errors = recipe_errors(recipe)
        problem = model_problem(recipe.get("model", "") if isinstance(recipe, dict) else "", svc.settings.model_roots)
        if problem:
            errors.append(problem)
        if not errors:
            msg = svc.validate(recipe, svc.user_of(request))
            if msg:
                errors.append(msg)
        if errors:
            return "⚠ not launched:\n" + "\n".join(f"- {h(e)}" for e in errors)
        try:
            run_id = svc.launch(svc.user_of(request), proj, recipe, bool(save_model))
        except Exception as exc:  # shown to the user; nothing was queued
            return f"⚠ not launched: {h(exc)}"
        return (f"✓ queued run <a href='?run={h(run_id)}' id='launch-run-link'>{h(run_id[:8])}</a> "
                f"(`{h(run_id)}`) — the link opens it in the Runs tab")

    launch.click(on_launch, [recipe_json, project, save], launched)
    return {"recipe_json": recipe_json, "project": project, "render": render, "form_inputs": form_inputs,
            "problem": problem, "kept": kept, "model": model}
