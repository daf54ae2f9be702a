"""Launch tab: model, bits, techniques, calibration and evaluation → recipe JSON → queue a run."""

from __future__ import annotations

import json

import gradio as gr

from moeq.app.escape import h
from moeq.app.form_check import model_problem, problems_markdown, read_form, recipe_errors
from moeq.app.recipe_fill import apply_overrides
from moeq.app.seed_launch import launch_seeds
from moeq.app.recipe_form import LaunchForm, form_to_recipe
from moeq.app.services import AppServices
from moeq.contract import vocabulary as vocab
from moeq.contract.errors import RecipeError


def build(svc: AppServices) -> dict:
    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(svc.model_choices(local=False), value="testbed-mixtral",  # local ones: after login
                                label="model (zoo name or local path)",
                                allow_custom_value=True, elem_id="launch-model")
            model_info = gr.Markdown(svc.describe("testbed-mixtral"), elem_id="launch-model-info")
            with gr.Row():
                wbits = gr.Dropdown(list(vocab.WEIGHT_BITS), value=4, label="weight bits", elem_id="launch-wbits")
                group = gr.Dropdown(list(vocab.GROUP_SIZE_CHOICES), value="128", label="group size", elem_id="launch-group",
                                    allow_custom_value=True)
                sym = gr.Checkbox(True, label="symmetric")
                abits = gr.Dropdown(sorted(vocab.ACT_BITS, reverse=True), value=16, label="activation bits", elem_id="launch-abits")
                router = gr.Dropdown(list(vocab.ROUTER_MODES), value="fp", label="router")
            preset = gr.Dropdown(list(vocab.preset_choices()), value="none", label="preset")
            techniques = gr.CheckboxGroup(list(vocab.form_labels()), value=["gptq"], label="techniques", elem_id="launch-techniques")
            with gr.Accordion("calibration", open=False):
                with gr.Row():
                    source = gr.Textbox("auto", label="source (auto | random | file:<path>)")
                    samples = gr.Number(128, label="samples", precision=0, elem_id="launch-samples")
                    seq_len = gr.Number(512, label="sequence length", precision=0, elem_id="launch-seqlen")
                    sampler = gr.Dropdown(list(vocab.SAMPLERS), value="uniform", label="sampler", elem_id="launch-sampler")
                    balance = gr.Number(0, label="EAQuant balance r (0 = off)")
            with gr.Accordion("mixed precision (router-norm allocation)", open=False):
                with gr.Row():
                    alloc = gr.Dropdown(["none", *vocab.ALLOCATION_METHODS], value="none", label="method")
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
            seeds = gr.Textbox("", label="repeat over seeds (e.g. 0,1,2: one run per seed, shown as a group; "
                               "empty: one run with the recipe's seed)", elem_id="launch-seeds")
            launch = gr.Button("Launch", variant="primary", elem_id="launch-button")
            launched = gr.Markdown(elem_id="launch-result")

    form_inputs = [model, wbits, group, sym, abits, router, preset, techniques, source, samples, seq_len, sampler,
                   balance, alloc, avg_bits, tiers, tasks, limit, seed, moqe]
    kept = gr.State({})  # recipe values the form cannot express (from "Re-run with edits"), laid over it

    def render(*values):
        """Every form change: the recipe JSON and every problem the parser finds (cheap: no database,
        no admission; the model reference is checked from its config.json). Admission runs on Launch."""
        *form_values, overrides = values
        form, errors = read_form(LaunchForm(*form_values))
        try:
            recipe = apply_overrides(form_to_recipe(form), overrides)
        except ValueError as exc:  # e.g. an unknown MoQE variant word
            return gr.update(), problems_markdown([*errors, f"MoQE variants: {exc}"])
        errors += recipe_errors(recipe)
        problem = model_problem(recipe.get("model", ""), svc.settings.model_roots, recipe)
        if problem and not any(e.startswith("model:") for e in errors):
            errors.append(problem)
        notes = [f"from recipe (the form cannot show it; edit the JSON to change it): {h(', '.join(sorted(overrides)))}"] \
            if overrides else []
        return json.dumps(recipe, indent=1), problems_markdown([h(e) for e in errors], notes)

    for comp in form_inputs:
        comp.change(render, [*form_inputs, kept], [recipe_json, problem])
    model.change(lambda ref: h(svc.describe(ref)), model, model_info)

    def on_launch(text, proj, save_model, seeds_text, request: gr.Request):
        """Launch: the recipe is admitted (parsed, confined, model checked) once, by svc.launch; only
        when that refuses a recipe key is the recipe re-read to list every problem at once."""
        try:
            recipe = json.loads(text)
        except (json.JSONDecodeError, TypeError, RecursionError) as exc:
            return f"⚠ recipe is not valid JSON: {h(exc)}"
        problem = model_problem(recipe.get("model", "") if isinstance(recipe, dict) else "", svc.settings.model_roots,
                                recipe)
        if problem:
            return "⚠ not launched:\n" + "\n".join(f"- {h(e)}" for e in [*recipe_errors(recipe), problem])
        try:
            if (seeds_text or "").strip():
                return launch_seeds(svc, svc.user_of(request), proj, recipe, bool(save_model), seeds_text)
            run_id = svc.launch(svc.user_of(request), proj, recipe, bool(save_model))
        except RecipeError as exc:  # list every recipe problem, not only the first
            errors = recipe_errors(recipe) or [str(exc)]
            return "⚠ not launched:\n" + "\n".join(f"- {h(e)}" for e in errors)
        except Exception as exc:  # shown to the user; nothing was queued
            return f"⚠ not launched: {h(exc)}"
        return (f"✓ queued run <a href='?run={h(run_id)}' id='launch-run-link'>{h(run_id[:8])}</a> "
                f"(`{h(run_id)}`) — the link opens it in the Runs tab")

    launch.click(on_launch, [recipe_json, project, save, seeds], launched)
    return {"recipe_json": recipe_json, "project": project, "render": render, "form_inputs": form_inputs,
            "problem": problem, "kept": kept, "model": model}
