"""Password checks off the web server's event loop.

Gradio's /login route is async and calls the auth function in the loop: a synchronous Argon2 check
(0.1–0.2 s) there stalls every request of every user while it runs, so anonymous clients rotating
addresses could slow the whole server down. Here each check runs in a worker thread, at most
`workers` at once (the CPU they may take), with at most `waiting` more queued; a login beyond that is
refused at once with 429 instead of piling up.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

CHECK_WORKERS = 2
CHECK_WAITING = 16


def threaded_auth(check: Callable[[str, str], bool], workers: int = CHECK_WORKERS, waiting: int = CHECK_WAITING):
    """An async auth function for gr.mount_gradio_app (Gradio awaits a coroutine function)."""
    gate = asyncio.Semaphore(workers)
    state = {"pending": 0}

    async def auth(username: str, password: str) -> bool:
        if state["pending"] >= workers + waiting:
            raise HTTPException(status_code=429, detail="too many sign-ins at once; try again in a few seconds")
        state["pending"] += 1
        try:
            async with gate:
                return bool(await run_in_threadpool(check, username, password))
        finally:
            state["pending"] -= 1

    return auth
