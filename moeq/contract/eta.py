"""A run's remaining time as people read it: the average rate of the current attempt extrapolated,
never less than a floor (the measured seconds of the stages still ahead, moeq.db.repository.eta).
One function for the web card (moeq.db.repository.progress) and the CLI's bar and stage lines."""

from __future__ import annotations

MIN_DONE_FOR_ETA = 0.02


def eta_seconds(elapsed: float, fraction: float, base: float = 0.0, floor: float | None = None) -> float | None:
    """Seconds left at the rate since `base` (the fraction where this attempt began); None when unknown."""
    done = fraction - base
    eta = None if done < MIN_DONE_FOR_ETA or elapsed <= 0 else max(0.0, elapsed * (1.0 - fraction) / done)
    if floor is not None and fraction < 1.0:
        eta = max(eta or 0.0, floor)
    return eta
