"""Team tab: who is logged in, which projects they belong to, how to add users."""

from __future__ import annotations

import gradio as gr

from moeq.app.escape import h
from moeq.app.services import AppServices


def build(svc: AppServices) -> dict:
    who = gr.Markdown(elem_id="team-who")
    gr.Markdown("Add a user from a shell on the server: `moeq users add NAME --project PROJECT` "
                "(password asked for, stored hashed with Argon2id). Runs are visible to members of their project.")

    def load(request: gr.Request):
        user = svc.user_of(request)
        projects = svc.projects(user)
        mode = "team mode (login required)" if svc.settings.auth else "embedded mode: single local user, no login"
        text = (f"**user:** {h(user)}  \n**projects:** {h(', '.join(projects)) or '—'}  \n**mode:** {mode}  \n"
                f"**{h(svc.worker_health())}**")
        return text, gr.update(choices=projects, value=projects[0] if projects else None)

    return {"load": load, "who": who}
