"""Runs tab: team history (filter, search, sort), tick runs to compare, live progress with elapsed
time and ETA, cancel (only where it applies), re-run with edits, notes/tags, export, and a summary card
per run with its full JSON behind a toggle.

The 2 s refresh redraws only what changed and never shows a loading overlay; action messages have
their own box, so the refresh does not wipe them."""

from __future__ import annotations

import gradio as gr

from moeq.app.escape import h
from moeq.app.paired_view import groups_html
from moeq.app.progress_view import fmt_duration
from moeq.app.run_card import ACTIVE, card_html, duration_s, progress_html
from moeq.app.run_label import model_label, nominal, run_title
from moeq.app.services import AppServices
from moeq.db.repository.queries import SORTABLE, RunFilter

# (field of the run dict, column header, width); ids are shown as their first 8 characters, which every
# run box of the app accepts (a unique prefix). Sized to fit a 1440 px window without cutting a cell: the
# model column holds a MODEL_LABEL_CHARS label; memory is on the run card and the Compare page.
COLUMNS = [("run_id", "run", "7%"), ("status", "status", "9%"), ("model", "model", "16%"),
           ("recipe_summary", "recipe", "20%"), ("avg_weight_bits", "bits (nominal)", "10%"), ("seed", "seed", "4%"),
           ("avg_accuracy", "acc", "5%"), ("kl", "KL", "6%"), ("mean_topk_agreement", "agree", "5%"),
           ("duration", "time", "5%"), ("user", "user", "5%"), ("created_at", "created", "8%")]
SHORT_ID = 8


def _panel_key(run: dict) -> str:
    """What the result panel was last drawn for; it is redrawn when this changes (every second of an
    active run, so the card's duration is live)."""
    live = f":{int(duration_s(run) or 0)}" if run["status"] in ACTIVE else ""
    return f"{run['run_id']}:{run['status']}{live}"


def _panel(run: dict) -> dict:
    """The full result JSON (with its run_id and status) once there is one, else the run."""
    return run.get("result") or run


def _cell(field: str, r: dict):
    v = r.get(field)
    if field == "duration":
        d = duration_s(r)
        return "" if d is None else fmt_duration(d)
    if field == "avg_weight_bits":
        nom = (nominal(r) or "").split(" ")[0]  # 'W3' of 'W3 mixed W2-W4, others W4' (the card says it all)
        return ("-" if v is None else f"{v:.3f}") + (f" ({nom})" if nom else "")
    if field == "status" and r["status"] == "running":
        return f"running {100 * (r.get('progress') or 0):.0f}%"
    if v is None:
        return ""
    if field == "run_id":
        return v[:SHORT_ID]
    if field == "model":
        return model_label(v)
    if field == "created_at":  # 'MM-DD HH:MM' UTC (the year and seconds are on the card)
        return v[5:16].replace("T", " ")
    if isinstance(v, float):
        return round(v, 3) if field != "kl" else round(v, 4)
    return ",".join(v) if isinstance(v, list) else v


def _rows(rows: list[dict]) -> list[list]:
    return [[_cell(field, r) for field, _, _ in COLUMNS] for r in rows]


def _pick_choices(rows: list[dict], keep: list[str]) -> list[tuple[str, str]]:
    seen = {r["run_id"][:SHORT_ID] for r in rows}
    choices = [(run_title(r), r["run_id"][:SHORT_ID]) for r in rows if r["status"] == "succeeded"]
    return choices + [(k, k) for k in keep or [] if k not in seen]


def _run_filter(m, st, u, p, t, q, srt, limit: int) -> RunFilter:
    """The filter row as a RunFilter; status "archived" lists the archived runs (hidden otherwise)."""
    archived = st == "archived"
    return RunFilter(model=m or None, status=(st or None) if not archived else None, user=u or None,
                     project=p or None, technique=t or None, search=q or None, sort=srt, limit=limit,
                     archived=archived)


def build(svc: AppServices, launch: dict) -> dict:
    with gr.Row():  # the model choices are the user's own, filled in after login (load_filters)
        model = gr.Dropdown([""], value="", label="model", allow_custom_value=True)
        status = gr.Dropdown(["", "queued", "running", "succeeded", "failed", "cancelled", "archived"], value="", label="status")
        user = gr.Textbox(label="user")
        project = gr.Textbox(label="project")
        technique = gr.Textbox(label="technique")
        search = gr.Textbox(label="search", elem_id="runs-search")
        sort = gr.Dropdown(list(SORTABLE), value="created", label="sort by")
    table = gr.Dataframe(headers=[c for _, c, _ in COLUMNS], value=[], interactive=False, elem_id="runs-table",
                         wrap=False, column_widths=[w for _, _, w in COLUMNS],
                         max_height=360)  # scrolls: the run card below stays near the clicked row
    total = gr.Markdown()
    groups = gr.HTML(elem_id="runs-groups")  # repeats of one recipe over seeds: mean ± sd (n)
    with gr.Row():
        pick = gr.CheckboxGroup([], label="tick finished runs to compare", elem_id="runs-pick", scale=5)
        compare_sel = gr.Button("Compare selected", variant="primary", elem_id="runs-compare-selected", scale=1)
    with gr.Row():
        selected = gr.Textbox(label="selected run (id or unique prefix; click a row)", elem_id="runs-selected",
                              scale=3)
        cancel = gr.Button("Cancel run", variant="stop", visible=False, elem_id="runs-cancel", scale=1)
        rerun = gr.Button("Re-run with edits (opens in Launch)", elem_id="runs-rerun", scale=1)
        archive = gr.Button("Archive / restore", elem_id="runs-archive", scale=1)
        delete = gr.Button("Delete", variant="stop", elem_id="runs-delete", scale=1)
        sure = gr.Checkbox(False, label="yes, delete it (its record and saved model)", elem_id="runs-delete-sure",
                           scale=1)
    message = gr.Markdown(elem_id="runs-message")
    progress = gr.HTML(elem_id="runs-progress")
    card = gr.HTML(elem_id="runs-card")
    with gr.Accordion("full result JSON", open=False):
        detail = gr.JSON(label="result", elem_id="runs-result")
    with gr.Row():
        notes = gr.Textbox(label="notes", lines=2)
        tags = gr.Textbox(label="tags (comma-separated)")
        save_notes = gr.Button("Save notes/tags")
    with gr.Row():
        export_fmt = gr.Radio(["csv", "json"], value="csv", label="export the filtered runs")
        export = gr.Button("Export")
        export_file = gr.HTML(elem_id="runs-export-link")  # a one-time link, for this user only
    timer = gr.Timer(2.0)
    filters = [model, status, user, project, technique, search, sort]
    shown = gr.State("")  # "run_id:status" of the result panel, to refresh it when the run moves on
    drawn = gr.State("")  # what the table / progress showed last, to skip identical redraws

    def refresh(m, st, u, p, t, q, srt, sel, seen, last, picked, request: gr.Request):
        who = svc.user_of(request)
        rows, n = svc.runs(who, _run_filter(m, st, u, p, t, q, srt, limit=200))
        prog, panel, card_out, now, can_cancel = "", gr.update(), gr.update(), seen, False
        if sel:
            try:
                run = svc.run(who, sel.strip())
                info = svc.progress(who, run["run_id"]) if run["status"] == "running" else None
                prog, now, can_cancel = progress_html(run, info), _panel_key(run), run["status"] in ACTIVE
                if now != seen:
                    panel, card_out = _panel(run), card_html(run)
            except Exception as exc:  # unknown id: say so in place of the bar
                prog = f"⚠ {h(exc)}"
        health = svc.worker_health()  # a dead local worker is visible where runs are followed
        counts = f"{len(rows)} of {n} runs" + (f" — ⚠ {h(health)}" if "DOWN" in health else "")
        table_rows = _rows(rows)
        choices = _pick_choices(rows, picked)
        key = repr((table_rows, counts, prog, choices))
        if key == last:
            return (gr.update(), gr.update(), gr.update(), panel, card_out, now, last, gr.update(),
                    gr.update(visible=can_cancel))
        return (table_rows, counts, prog, panel, card_out, now, key,
                gr.update(choices=choices), gr.update(visible=can_cancel))

    outs = [table, total, progress, detail, card, shown, drawn, pick, cancel]
    ins = [*filters, selected, shown, drawn, pick]
    for comp in filters:
        comp.change(refresh, ins, outs, show_progress="hidden")
    timer.tick(refresh, ins, outs, show_progress="hidden")

    def seed_groups(m, st, u, p, t, q, srt, request: gr.Request):
        rows, _ = svc.runs(svc.user_of(request), RunFilter(model=m or None, status=st or None, user=u or None,
                                                           project=p or None, technique=t or None, search=q or None,
                                                           sort=srt, limit=200))
        return groups_html(rows)

    table.change(seed_groups, filters, groups, show_progress="hidden")  # only when the table was redrawn

    def choose(evt: gr.SelectData, data):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(data.iloc[row, 0]) if hasattr(data, "iloc") else str(data[row][0])

    table.select(choose, table, selected)

    def show(sel, request: gr.Request):
        if not sel:
            return "", None, "", "", "", "", gr.update(visible=False)
        try:
            who = svc.user_of(request)
            run = svc.run(who, sel.strip())
        except Exception as exc:  # unknown or ambiguous id while typing
            return f"⚠ {h(exc)}", None, "", "", "", "", gr.update(visible=False)
        info = svc.progress(who, run["run_id"]) if run["status"] == "running" else None
        return (progress_html(run, info), _panel(run), card_html(run), run.get("notes", ""),
                ",".join(run.get("tags", [])), _panel_key(run), gr.update(visible=run["status"] in ACTIVE))

    selected.change(show, selected, [progress, detail, card, notes, tags, shown, cancel], show_progress="hidden")

    def do_cancel(sel, request: gr.Request):
        if not sel:
            return "select a run first"
        try:
            return h(svc.cancel_message(svc.user_of(request), sel.strip()))
        except Exception as exc:
            return f"⚠ {h(exc)}"

    def do_notes(sel, n, t, request: gr.Request):
        if not sel:
            return "select a run first"
        svc.annotate(svc.user_of(request), sel.strip(), n, t)
        return f"notes saved for {h(sel.strip()[:SHORT_ID])}"

    def do_archive(sel, request: gr.Request):
        if not sel:
            return "select a run first"
        try:
            who = svc.user_of(request)
            return h(svc.archive(who, sel.strip(), not svc.run(who, sel.strip()).get("archived")))
        except Exception as exc:
            return f"⚠ {h(exc)}"

    def do_delete(sel, confirmed, request: gr.Request):
        if not sel:
            return "select a run first", False
        if not confirmed:
            return "tick “yes, delete it” first: a deleted run cannot be brought back (Archive hides it)", False
        try:
            return h(svc.delete(svc.user_of(request), sel.strip())), False
        except Exception as exc:
            return f"⚠ {h(exc)}", False

    cancel.click(do_cancel, selected, message)
    archive.click(do_archive, selected, message)
    delete.click(do_delete, [selected, sure], [message, sure])
    save_notes.click(do_notes, [selected, notes, tags], message)

    def do_rerun(sel, request: gr.Request):
        from moeq.app.recipe_fill import form_values, recipe_to_form

        run = svc.run(svc.user_of(request), sel.strip())
        form, overrides = recipe_to_form(run["recipe"])
        return (*form_values(form), overrides, gr.Tabs(selected="launch"))

    def do_export(fmt, m, st, u, p, t, q, srt, request: gr.Request):
        who = svc.user_of(request)
        rows, _ = svc.runs(who, _run_filter(m, st, u, p, t, q, srt, limit=1000))
        url, filename = svc.export_link(who, rows, fmt)
        return f'<a href="{h(url)}" download="{h(filename)}">download {h(filename)}</a> (once, within 10 minutes)'

    export.click(do_export, [export_fmt, *filters], export_file)

    def compare_text(picked):
        return " ".join(picked or [])

    def load_filters(request: gr.Request):
        return gr.update(choices=["", *svc.filter_values(svc.user_of(request))["model"]])

    return {"rerun": rerun, "selected": selected, "do_rerun": do_rerun, "pick": pick, "compare_sel": compare_sel,
            "compare_text": compare_text, "message": message,
            "load_filters": load_filters, "model_filter": model}
