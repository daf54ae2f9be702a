"""Runs tab: team history (filter, search, sort), live progress, cancel, re-run, notes/tags, export."""

from __future__ import annotations

import json

import gradio as gr

from app.services import AppServices
from db.repository.queries import SORTABLE, RunFilter

COLUMNS = ["run_id", "status", "progress", "model", "recipe_summary", "avg_weight_bits", "avg_accuracy", "kl",
           "mean_topk_agreement", "user", "project", "created_at", "tags"]


def progress_html(run: dict) -> str:
    pct = int(round(100 * (run.get("progress") or 0)))
    color = {"failed": "#d62728", "cancelled": "#7f7f7f", "succeeded": "#2ca02c"}.get(run["status"], "#1f77b4")
    err = run.get("error")
    detail = f"<br><b>{err['type']}</b>: {err['message']}" if err else ""
    return (f"<div id='run-progress' data-run='{run['run_id']}' data-status='{run['status']}' data-progress='{pct}'>"
            f"<div style='background:#eee;border-radius:4px;width:100%'><div style='width:{pct}%;background:{color};"
            f"color:white;padding:2px 6px;border-radius:4px;white-space:nowrap'>{pct}%</div></div>"
            f"<small>{run['status']} — {run.get('stage') or ''}{detail}</small></div>")


def _rows(rows: list[dict]) -> list[list]:
    def fmt(v):
        return round(v, 4) if isinstance(v, float) else (",".join(v) if isinstance(v, list) else v)
    return [[fmt(r.get(c)) for c in COLUMNS] for r in rows]


def build(svc: AppServices, launch: dict) -> dict:
    values = svc.filter_values()
    with gr.Row():
        model = gr.Dropdown(["", *values["model"]], value="", label="model", allow_custom_value=True)
        status = gr.Dropdown(["", "queued", "running", "succeeded", "failed", "cancelled"], value="", label="status")
        user = gr.Textbox(label="user")
        project = gr.Textbox(label="project")
        technique = gr.Textbox(label="technique")
        search = gr.Textbox(label="search", elem_id="runs-search")
        sort = gr.Dropdown(list(SORTABLE), value="created", label="sort by")
    table = gr.Dataframe(headers=COLUMNS, value=[], interactive=False, elem_id="runs-table", wrap=True)
    total = gr.Markdown()
    with gr.Row():
        selected = gr.Textbox(label="selected run id", elem_id="runs-selected")
        cancel = gr.Button("Cancel run", variant="stop")
        rerun = gr.Button("Re-run with edits (opens in Launch)")
    progress = gr.HTML(elem_id="runs-progress")
    with gr.Row():
        notes = gr.Textbox(label="notes", lines=2)
        tags = gr.Textbox(label="tags (comma-separated)")
        save_notes = gr.Button("Save notes/tags")
    detail = gr.JSON(label="result")
    with gr.Row():
        export_fmt = gr.Radio(["csv", "json"], value="csv", label="export the filtered runs")
        export = gr.Button("Export")
        export_file = gr.File(label="download")
    timer = gr.Timer(2.0)
    filters = [model, status, user, project, technique, search, sort]

    def refresh(m, st, u, p, t, q, srt, sel, request: gr.Request):
        who = svc.user_of(request)
        rows, n = svc.runs(who, RunFilter(model=m or None, status=st or None, user=u or None, project=p or None,
                                          technique=t or None, search=q or None, sort=srt, limit=200))
        prog = ""
        if sel:
            try:
                prog = progress_html(svc.run(who, sel.strip()))
            except Exception as exc:  # unknown id: say so in place of the bar
                prog = f"⚠ {exc}"
        return _rows(rows), f"{len(rows)} of {n} runs", prog

    for comp in filters:
        comp.change(refresh, [*filters, selected], [table, total, progress])
    timer.tick(refresh, [*filters, selected], [table, total, progress])

    def pick(evt: gr.SelectData, data):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(data.iloc[row, 0]) if hasattr(data, "iloc") else str(data[row][0])

    table.select(pick, table, selected)

    def show(sel, request: gr.Request):
        if not sel:
            return "", None, "", ""
        run = svc.run(svc.user_of(request), sel.strip())
        return progress_html(run), run.get("result") or run, run.get("notes", ""), ",".join(run.get("tags", []))

    selected.change(show, selected, [progress, detail, notes, tags])
    def do_cancel(sel, request: gr.Request):
        return f"cancel {sel}: {svc.cancel(svc.user_of(request), sel.strip())}" if sel else "select a run first"

    def do_notes(sel, n, t, request: gr.Request):
        if not sel:
            return "select a run first"
        svc.annotate(svc.user_of(request), sel.strip(), n, t)
        return f"notes saved for {sel}"

    cancel.click(do_cancel, selected, total)
    save_notes.click(do_notes, [selected, notes, tags], total)

    def do_rerun(sel, request: gr.Request):
        run = svc.run(svc.user_of(request), sel.strip())
        return json.dumps(run["recipe"], indent=1), gr.Tabs(selected="launch")

    def do_export(fmt, m, st, u, p, t, q, srt, request: gr.Request):
        rows, _ = svc.runs(svc.user_of(request), RunFilter(model=m or None, status=st or None, user=u or None,
                                                           project=p or None, technique=t or None,
                                                           search=q or None, sort=srt, limit=1000))
        return str(svc.export(rows, fmt))

    export.click(do_export, [export_fmt, *filters], export_file)
    return {"rerun": rerun, "selected": selected, "do_rerun": do_rerun, "refresh": refresh, "filters": filters,
            "table": table, "total": total, "progress": progress}
