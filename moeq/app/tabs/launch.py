"""Launch tab: model, bits, techniques, calibration and evaluation → recipe JSON → queue a run."""

from __future__ import annotations

import json

import gradio as gr

from moeq.app.escape import h
from moeq.app.form_check import problems_markdown, recipe_errors
from moeq.app.launch_check import check_launch, first_difference, form_recipe, parse_json
from moeq.app.recipe_fill import form_values as form_values_of, recipe_to_form
from moeq.app.seed_launch import launch_seeds
from moeq.app.services import AppServices
from moeq.contract import vocabulary as vocab
from moeq.contract.errors import MoeqError, RecipeError


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
            recipe_json = gr.Code(language="json",
                                  label="recipe JSON (edits fill the form; Launch queues exactly this)",
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

    def verdict(check, overrides: dict, request) -> str:
        """The problem list for `check`, plus admission (model sizes, roots, run access) when it is clean:
        "✓ recipe is valid" only when Launch would queue this recipe now."""
        problems = [h(p) for p in check.problems]
        if not problems and check.recipe is not None:
            try:
                user = svc.user_of(request)
            except Exception:  # not signed in: admission with no project access
                user = None
            why = svc.validate(check.recipe, user)
            if why:
                problems.append(h(why))
        kept_keys = h(", ".join(sorted(overrides)))
        notes = [f"from recipe (the form cannot show it; edit the JSON to change it): {kept_keys}"] if overrides else []
        return problems_markdown(problems, notes)

    def render(*values, request: gr.Request = None):
        """Every form change: the recipe JSON follows the form (rewritten only when the recipe differs, so
        a JSON edit being synced into the form is not reformatted) and the problem list is redrawn. A form
        with an unreadable field leaves the JSON as it is and says not launchable."""
        *form_values, overrides, text = values
        from_form, errors = form_recipe(form_values, overrides)
        if from_form is None:
            return gr.update(), problems_markdown([h(e) for e in errors] + [
                "the recipe JSON shows the last readable form; Launch is refused until the form is fixed"])
        shown, _ = parse_json(text)
        same = shown is not None and first_difference(from_form, shown) is None
        new_text = text if same else json.dumps(from_form, indent=1)
        check = check_launch(new_text, form_values, overrides, svc.settings.model_roots)
        return (gr.update() if same else new_text), verdict(check, overrides, request)

    def on_json(text, *values, request: gr.Request = None):
        """A JSON edit: the form follows the JSON (fields it cannot show are kept as "from recipe");
        JSON that is not a valid recipe leaves the form as it is and says why."""
        *form_values, overrides = values
        shown, bad = parse_json(text)
        if shown is None:
            return (*[gr.update()] * len(form_inputs), gr.update(), problems_markdown([h(bad)]))
        try:
            form, new_overrides = recipe_to_form(shown)
        except MoeqError:
            errors = recipe_errors(shown) or ["recipe JSON: not a valid recipe"]
            return (*[gr.update()] * len(form_inputs), gr.update(), problems_markdown([h(e) for e in errors]))
        new_values = form_values_of(form)
        check = check_launch(text, new_values, new_overrides, svc.settings.model_roots)
        return (*new_values, new_overrides, verdict(check, new_overrides, request))

    render_inputs = [*form_inputs, kept, recipe_json]
    # `.input`, not `.change`: only a person's edit of a field rewrites the JSON. The form updates that
    # on_json (a JSON edit) and "Re-run with edits" make must not: each changed field's `.change` would
    # run `render` with whatever the page held for the other fields at that moment (a field in a closed
    # accordion may still hold its old value), rewriting the JSON the person just typed with a stale
    # form. "Re-run with edits" and the page load call `render` themselves once the form is filled.
    for comp in form_inputs:
        comp.input(render, render_inputs, [recipe_json, problem], trigger_mode="always_last")
    recipe_json.input(on_json, [recipe_json, *form_inputs, kept], [*form_inputs, kept, problem],
                      trigger_mode="always_last")  # the last edit wins, never an earlier one
    model.change(lambda ref: h(svc.describe(ref)), model, model_info)

    def on_launch(text, *values, request: gr.Request = None):
        """Launch: the recipe JSON on the page, only when the form agrees with it and nothing on the page
        is a problem at this moment; admission (svc.launch) checks it once more before anything is queued."""
        *form_values, overrides, proj, save_model, seeds_text = values
        check = check_launch(text, form_values, overrides, svc.settings.model_roots)
        if not check.launchable:
            return "⚠ not launched:\n" + "\n".join(f"- {h(e)}" for e in check.problems)
        recipe = check.recipe
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

    launch.click(on_launch, [recipe_json, *form_inputs, kept, project, save, seeds], launched)
    return {"recipe_json": recipe_json, "project": project, "render": render, "form_inputs": form_inputs,
            "render_inputs": render_inputs,
            "problem": problem, "kept": kept, "model": model}
