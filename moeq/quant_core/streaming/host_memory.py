"""The memory this process may use: the smaller of the cgroup limit and the host's available memory.
Read by the streaming choice (moeq.quant_core.streaming.select) and by the worker's check that a
config fits before a model is built from it (moeq.quant_core.model_io.check_loadable)."""

from __future__ import annotations

from pathlib import Path


def _cgroup_limit(free: bool = False) -> int | None:
    """The tightest memory limit on this process's cgroup and its ancestors (v1), or the v2 limit;
    with `free`, the tightest limit minus what that cgroup already holds."""
    from moeq.quant_core.streaming.limits import MEMORY_ROOT, _own_cgroup

    def read(path: Path) -> int | None:
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    limits = []
    own = _own_cgroup()
    while own is not None and (own == MEMORY_ROOT or MEMORY_ROOT in own.parents):
        limit, used = read(own / "memory.limit_in_bytes"), read(own / "memory.usage_in_bytes")
        if limit is not None and limit < 1 << 60:
            limits.append(limit - (used or 0) if free else limit)
        own = own.parent if own != MEMORY_ROOT else None
    v2 = Path("/sys/fs/cgroup")
    limit, used = read(v2 / "memory.max"), read(v2 / "memory.current")
    if limit is not None and limit < 1 << 60:
        limits.append(limit - (used or 0) if free else limit)
    return min(limits) if limits else None


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def usable_memory_bytes() -> int | None:
    """All the memory this process may use (for whether a checkpoint fits at all)."""
    known = [x for x in (_mem_available(), _cgroup_limit()) if x is not None]
    return min(known) if known else None


def free_memory_bytes() -> int | None:
    """The memory this process may still take now: `MemAvailable`, or the cgroup limit minus the
    cgroup's current charge, whichever is smaller (for sizing a streamed layer's expert chunks)."""
    known = [x for x in (_mem_available(), _cgroup_limit(free=True)) if x is not None]
    return max(0, min(known)) if known else None
