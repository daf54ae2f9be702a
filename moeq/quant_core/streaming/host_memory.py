"""The memory this process may use: the smaller of the cgroup limit and the host's available memory.
Read by the streaming choice (moeq.quant_core.streaming.select) and by the worker's check that a
config fits before a model is built from it (moeq.quant_core.model_io.check_loadable)."""

from __future__ import annotations

from pathlib import Path


def _cgroup_limit() -> int | None:
    """The tightest memory limit on this process's cgroup and its ancestors (v1), or the v2 limit."""
    from moeq.quant_core.streaming.limits import MEMORY_ROOT, _own_cgroup

    limits = []
    own = _own_cgroup()
    while own is not None and (own == MEMORY_ROOT or MEMORY_ROOT in own.parents):
        try:
            limits.append(int((own / "memory.limit_in_bytes").read_text()))
        except (OSError, ValueError):
            pass
        own = own.parent if own != MEMORY_ROOT else None
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    real = [x for x in limits if x < 1 << 60]
    return min(real) if real else None


def usable_memory_bytes() -> int | None:
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = _cgroup_limit()
    return min(x for x in (avail, limit) if x is not None) if (avail or limit) else None
