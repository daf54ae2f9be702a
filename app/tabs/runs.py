"""Runs tab: team history (filter, search, sort), live progress, cancel, re-run, notes/tags, export."""

from __future__ import annotations

import json

import gradio as gr

from app.services import AppServices
from db.repository.queries import SORTABLE, RunFilter

# (field of the run dict, column header); the run id is shown as its first 8 characters, which
# every run box of the app accepts (a unique prefix)
COLUMNS = [("run_id", "run"), ("status", "status"), ("progress", "progress"), ("model", "model"),
           ("recipe_summary", "recipe"), ("avg_weight_bits", "bits"), ("avg_accuracy", "acc"), ("kl", "KL"),
           ("mean_topk_agreement", "top-k agree"), ("peak_host_rss_mb", "host MB"), ("peak_device_mb", "GPU MB"),
           ("user", "user"), ("project", "project"),
           ("created_at", "created (UTC)"), ("tags", "tags")]
SHORT_ID = 8


def progress_html(run: dict) -> str:
    pct = int(round(100 * (run.get("progress") or 0)))
    color = {"failed": "#d62728", "cancelled": "#7f7f7f", "succeeded": "#2ca02c"}.get(run["status"], "#1f77b4")
    err = run.get("error")
    detail = f"<br><b>{err['type']}</b>: {err['message']}" if err else ""
    return (f"<div id='run-progress' data-run='{run['run_id']}' data-status='{run['status']}' data-progress='{pct}'>"
            f"<div style='background:#eee;border-radius:4px;width:100%'><div style='width:{pct}%;background:{color};"
            f"color:white;padding:2px 6px;border-radius:4px;white-space:nowrap'>{pct}%</div></div>"
            f"<small>{run['status']} — {run.get('stage') or ''}{detail}</small></div>")


def _panel_key(run: dict) -> str:
    """What the result panel was last drawn for; it is redrawn when this changes."""
    return f"{run['run_id']}:{run['status']}"


def _panel(run: dict) -> dict:
    """What the result panel shows: the result JSON of DESIGN §4.3 once there is one, else the run."""
    result = run.get("result")
    return {"run_id": run["run_id"], "status": run["status"], **result} if result else run


def _cell(field: str, v):
    if v is None:
        return ""
    if field == "run_id":
        return v[:SHORT_ID]
    if field == "created_at":
        return v[:16].replace("T", " ")
    if field == "progress":
        return f"{100 * v:.0f}%"
    if isinstance(v, float):
        return round(v, 4)
    return ",".join(v) if isinstance(v, list) else v


def _rows(rows: list[dict]) -> list[list]:
    return [[_cell(field, r.get(field)) for field, _ in COLUMNS] for r in rows]


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
    table = gr.Dataframe(headers=[h for _, h in COLUMNS], value=[], interactive=False, elem_id="runs-table", wrap=True)
    total = gr.Markdown()
    with gr.Row():
        selected = gr.Textbox(label="selected run (id or unique prefix; click a row)", elem_id="runs-selected")
        cancel = gr.Button("Cancel run", variant="stop")
        rerun = gr.Button("Re-run with edits (opens in Launch)")
    progress = gr.HTML(elem_id="runs-progress")
    with gr.Row():
        notes = gr.Textbox(label="notes", lines=2)
        tags = gr.Textbox(label="tags (comma-separated)")
        save_notes = gr.Button("Save notes/tags")
    detail = gr.JSON(label="result", elem_id="runs-result")
    with gr.Row():
        export_fmt = gr.Radio(["csv", "json"], value="csv", label="export the filtered runs")
        export = gr.Button("Export")
        export_file = gr.File(label="download")
    timer = gr.Timer(2.0)
    filters = [model, status, user, project, technique, search, sort]

    shown = gr.State("")  # "run_id:status" of the result panel, to refresh it when the run moves on

    def refresh(m, st, u, p, t, q, srt, sel, seen, request: gr.Request):
        who = svc.user_of(request)
        rows, n = svc.runs(who, RunFilter(model=m or None, status=st or None, user=u or None, project=p or None,
                                          technique=t or None, search=q or None, sort=srt, limit=200))
        prog, panel, now = "", gr.update(), seen
        if sel:
            try:
                run = svc.run(who, sel.strip())
                prog, now = progress_html(run), _panel_key(run)
                if now != seen:
                    panel = _panel(run)
            except Exception as exc:  # unknown id: say so in place of the bar
                prog = f"⚠ {exc}"
        return _rows(rows), f"{len(rows)} of {n} runs", prog, panel, now

    for comp in filters:
        comp.change(refresh, [*filters, selected, shown], [table, total, progress, detail, shown])
    timer.tick(refresh, [*filters, selected, shown], [table, total, progress, detail, shown])

    def pick(evt: gr.SelectData, data):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(data.iloc[row, 0]) if hasattr(data, "iloc") else str(data[row][0])

    table.select(pick, table, selected)

    def show(sel, request: gr.Request):
        if not sel:
            return "", None, "", "", ""
        try:
            run = svc.run(svc.user_of(request), sel.strip())
        except Exception as exc:  # unknown or ambiguous id while typing
            return f"⚠ {exc}", None, "", "", ""
        return (progress_html(run), _panel(run), run.get("notes", ""), ",".join(run.get("tags", [])),
                _panel_key(run))

    selected.change(show, selected, [progress, detail, notes, tags, shown])
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
    return {"rerun": rerun, "selected": selected, "do_rerun": do_rerun}
