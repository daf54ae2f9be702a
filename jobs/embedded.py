"""Embedded mode: a local worker subprocess on the SQLite broker, started and stopped by `moeq serve`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from jobs.settings import Settings

log = logging.getLogger(__name__)


class LocalWorker:
    """A `python -m jobs.worker` child process sharing this process's settings (environment)."""

    def __init__(self, settings: Settings, loglevel: str = "WARNING") -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LocalWorker":
        env = dict(os.environ, MOEQ_HOME=str(self.settings.home), MOEQ_DATABASE_URL=self.settings.database_url)
        if self.settings.broker_url:
            env["MOEQ_BROKER_URL"] = self.settings.broker_url
        log_file = open(self.settings.home / "worker.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "jobs.worker", f"--loglevel={self.loglevel}"],
                                     env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        log.info("started local worker pid %d (log: %s)", self.proc.pid, self.settings.home / "worker.log")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
