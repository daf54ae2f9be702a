"""How the CLI shows a run's progress: a tqdm bar on a terminal (stage, percent, elapsed, ETA), plain
timestamped stage lines otherwise (log files, CI, notebooks), nothing with --quiet.

Every view is a `(stage, fraction)` callable, so it serves `moeq run` (progress from the pipeline in
this process) and `moeq submit --wait` (progress read back from the database) alike.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from moeq.contract.eta import eta_seconds

log = logging.getLogger("moeq.progress")
LINE_MIN_INTERVAL_S = 5.0  # stage lines: on every new stage, else at most this often


def fmt_duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _no_floor(stage: str) -> None:
    return None


def stage_name(stage: str) -> str:
    """The stage without its counter ('quantize: layer 2/4' → 'quantize'), to tell stage changes."""
    return stage.split(":")[0].strip()


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class BarProgress:
    """A tqdm bar in percent on stderr; the description is the stage."""

    def __init__(self, stream=None, elapsed0: float = 0.0, floor=None) -> None:
        from tqdm import tqdm

        class _Bar(tqdm):  # the bar's right side is our own text: elapsed and ETA of this attempt
            timing = "elapsed 0s, ETA ?"

            @property
            def format_dict(self):
                return {**super().format_dict, "timing": self.timing}

        stream = stream or sys.stderr
        # a pseudo-terminal may report a 0×0 size (tqdm then draws nothing): assume 100×24 then
        sized = _columns(stream) >= 60
        self.bar = _Bar(total=100, file=stream, leave=True, dynamic_ncols=sized, ncols=None if sized else 100,
                        nrows=None if sized else 24, smoothing=0, mininterval=0.2, bar_format="{desc} {percentage:3.0f}%|{bar}| {timing}")
        self.start = time.monotonic() - elapsed0
        self.base = 0.0
        self.floor = floor or _no_floor

    def restart(self, base: float, elapsed0: float = 0.0) -> None:
        """A new attempt took over at `base`: the ETA is measured from here on."""
        self.start, self.base = time.monotonic() - elapsed0, base

    def __call__(self, stage: str, fraction: float) -> None:
        pct = max(self.bar.n, min(100.0, 100.0 * fraction))
        elapsed = time.monotonic() - self.start
        eta = eta_seconds(elapsed, pct / 100, self.base, self.floor(stage))
        self.bar.set_description_str(f"{stage[:40]:<40}", refresh=False)
        self.bar.timing = f"elapsed {fmt_duration(elapsed)}, ETA {fmt_duration(eta)}"
        self.bar.update(pct - self.bar.n)
        if fraction >= 1.0:
            self.close()

    def close(self) -> None:
        self.bar.refresh()
        self.bar.close()


class LineProgress:
    """`HH:MM:SS [ 35%] quantize: layer 2/4 — elapsed 5s, ETA 9s` on every new stage (logging)."""

    def __init__(self, elapsed0: float = 0.0, floor=None) -> None:
        self.start = time.monotonic() - elapsed0
        self.base = 0.0
        self.floor = floor or _no_floor
        self.last_stage = ""
        self.last_t = 0.0

    def restart(self, base: float, elapsed0: float = 0.0) -> None:
        self.start, self.base = time.monotonic() - elapsed0, base

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        new = stage_name(stage) != stage_name(self.last_stage)
        if not (new or fraction >= 1.0 or now - self.last_t >= LINE_MIN_INTERVAL_S) or stage == self.last_stage:
            return
        self.last_stage, self.last_t = stage, now
        elapsed = now - self.start
        log.info("[%3.0f%%] %s — elapsed %s, ETA %s", 100 * fraction, stage, fmt_duration(elapsed),
                 fmt_duration(eta_seconds(elapsed, fraction, self.base, self.floor(stage))))

    def close(self) -> None:
        return None


class NoProgress:
    def __call__(self, stage: str, fraction: float) -> None:
        return None

    def restart(self, base: float, elapsed0: float = 0.0) -> None:
        return None

    def close(self) -> None:
        return None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        return None


def setup_line_logging() -> None:
    """Stage lines go to stderr with a timestamp, whatever the root log level (-v or not)."""
    if log.handlers:
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def make_progress(quiet: bool = False, elapsed0: float = 0.0, floor=None):
    """The view for this process's stderr: bar on a terminal, stage lines otherwise, none when quiet.
    `floor(stage)`: seconds the stages after `stage` took last time (the ETA never says less)."""
    if quiet:
        return NoProgress()
    if sys.stderr.isatty():
        return BarProgress(elapsed0=elapsed0, floor=floor)
    setup_line_logging()
    return LineProgress(elapsed0=elapsed0, floor=floor)
