"""Embedded mode: a local worker subprocess on the SQLite broker, started, supervised and stopped by
`moeq serve`. A worker that dies is restarted with back-off (1 s, 2 s, 4 s … at most 60 s; reset
after a minute of uptime); the web page shows its health. The worker watches the server's pid and
exits when the server is gone, so it never outlives it (even after a SIGKILL of the server)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from moeq.jobs.settings import Settings

log = logging.getLogger(__name__)
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
STABLE_S = 60.0  # uptime after which the back-off starts again from its first step


def roots_env(settings: Settings) -> dict[str, str]:
    """MOEQ_*_ROOTS naming exactly `settings`' roots (an empty value means none)."""
    env = {"MOEQ_MODEL_ROOTS": os.pathsep.join(str(p) for p in settings.model_roots)}
    for name, roots in (("MOEQ_DATA_ROOTS", settings.data_roots), ("MOEQ_TASK_ROOTS", settings.task_roots)):
        if roots is not None:
            env[name] = os.pathsep.join(str(p) for p in roots)
    return env


class LocalWorker:
    """A supervised `python -m moeq.jobs.worker` child process sharing this process's settings."""

    def __init__(self, settings: Settings, loglevel: str = "WARNING", poll_s: float = 0.5) -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.poll_s = poll_s
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.next_start: float | None = None  # monotonic time of a scheduled restart
        self._failures = 0
        self._started_at = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> None:
        env = dict(os.environ, MOEQ_HOME=str(self.settings.home), MOEQ_DATABASE_URL=self.settings.database_url,
                   MOEQ_PARENT_PID=str(os.getpid()))
        if self.settings.broker_url:
            env["MOEQ_BROKER_URL"] = self.settings.broker_url
        env.update(roots_env(self.settings))  # the worker checks against the server's roots
        log_file = open(self.settings.home / "worker.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moeq.jobs.worker", f"--loglevel={self.loglevel}"],
                                     env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        self._started_at = time.monotonic()
        log.info("started local worker pid %d (log: %s)", self.proc.pid, self.settings.home / "worker.log")

    def start(self) -> "LocalWorker":
        with self._lock:
            self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="moeq-worker-supervisor", daemon=True)
        self._thread.start()
        return self

    def _supervise(self) -> None:
        while not self._stop.wait(self.poll_s):
            with self._lock:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                if self.proc is not None and self.proc.poll() is not None and self.next_start is None:
                    self.last_exit = self.proc.returncode
                    if now - self._started_at >= STABLE_S:
                        self._failures = 0
                    delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
                    self._failures += 1
                    self.next_start = now + delay
                    log.warning("local worker exited with code %s; restarting in %.0f s", self.last_exit, delay)
                if self.next_start is not None and now >= self.next_start:
                    self.next_start = None
                    self.restarts += 1
                    try:
                        self._spawn()
                    except OSError as exc:
                        log.error("cannot restart the local worker: %s", exc)
                        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> str:
        """One line for the page: running / restarting, with restarts and the last exit code."""
        with self._lock:
            extra = f", restarted {self.restarts}×, last exit code {self.last_exit}" if self.restarts else ""
            if self.alive():
                return f"worker: running (pid {self.proc.pid}{extra})"
            if self.next_start is not None:
                wait = max(0.0, self.next_start - time.monotonic())
                return f"worker: DOWN (exit code {self.last_exit}); restarting in {wait:.0f} s{extra}"
            return "worker: DOWN" + extra

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            proc = self.proc
        if self._thread is not None:
            self._thread.join(timeout=5)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
