"""Paired differences between two runs' results, with 95 % intervals (torch-free, standard library).

Two runs are paired only on what both scored: per task the items with the same content id
(`item_ids`), for perplexity and KL the evaluation windows with the same id (`windows.ids`). Every
difference is run B − run A.

- Accuracy: a paired bootstrap over the common items — BOOTSTRAP_RESAMPLES resamples of the items
  with replacement, each task drawing from its own `random.Random(f"{BOOTSTRAP_SEED}:{task}")`
  (`rng.random()` per draw, index `int(rng.random() * n)`); the interval is the percentile interval
  (sorted resample means at indices floor(0.025·B) and ceil(0.975·B) − 1). The average accuracy uses
  the same resamples (the mean over tasks of resample b). 0/1 tasks also get the exact McNemar
  p-value: two-sided binomial test of the discordant pairs against 1/2.
- Perplexity: exp(mean window NLL) of B − of A, the same bootstrap over common windows
  (`random.Random(f"{BOOTSTRAP_SEED}:perplexity")`); KL(FP‖Q): mean window KL, over the windows both
  runs kept KL for (`…:kl`).
- "within noise": the interval contains 0.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from dataclasses import asdict, dataclass

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Paired:
    """One paired difference (B − A); `reason` says why it is not paired when `paired` is False."""

    name: str
    paired: bool
    n: int = 0
    a: float | None = None
    b: float | None = None
    delta: float | None = None
    low: float | None = None
    high: float | None = None
    mcnemar_p: float | None = None
    discordant: tuple[int, int] | None = None  # (A right & B wrong, A wrong & B right)
    reason: str = ""

    @property
    def within_noise(self) -> bool | None:
        return None if not self.paired else self.low <= 0.0 <= self.high

    def to_dict(self) -> dict:
        return {**asdict(self), "within_noise": self.within_noise}


def percentile_interval(stats: list[float], level: float = LEVEL) -> tuple[float, float]:
    """(low, high) of sorted resample statistics: indices floor(α/2·B) and ceil((1−α/2)·B) − 1."""
    s = sorted(stats)
    alpha = 1.0 - level
    return s[int(math.floor(alpha / 2 * len(s)))], s[int(math.ceil((1 - alpha / 2) * len(s))) - 1]


def _draw(key: str, n: int, resamples: int, seed: int) -> list[list[int]]:
    rng = random.Random(f"{seed}:{key}")
    draw = rng.random
    return [[int(draw() * n) for _ in range(n)] for _ in range(resamples)]


@functools.lru_cache(maxsize=16)
def _cached_draws(key: str, n: int, resamples: int, seed: int) -> list[list[int]]:
    return _draw(key, n, resamples, seed)


def resample_indices(key: str, n: int, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> list[list[int]]:
    """The bootstrap's item indices: `resamples` lists of n draws `int(rng.random() * n)` from
    `random.Random(f"{seed}:{key}")`. They depend only on (key, n), so comparing one baseline with
    several runs draws them once (kept for small n: at most 16 × 2000 × 200 indices)."""
    return _cached_draws(key, n, resamples, seed) if n <= 200 else _draw(key, n, resamples, seed)


def resample_means(values: list[float], key: str, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> list[float]:
    """Means of `resamples` bootstrap resamples of `values` (one RNG per `key`, documented above)."""
    n = len(values)
    if all(v == values[0] for v in values):  # every resample has that mean: no draws needed
        return [float(values[0])] * resamples
    pick = values.__getitem__
    return [sum(map(pick, idx)) / n for idx in resample_indices(key, n, resamples, seed)]


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of `b` and `c` discordant pairs (binomial test, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def _common(ids_a: list, ids_b: list) -> list[tuple[int, int]]:
    where_b = {x: j for j, x in enumerate(ids_b)}
    return [(i, where_b[x]) for i, x in enumerate(ids_a) if x in where_b]


def _task_pair(ta: dict | None, tb: dict | None, name: str) -> tuple[Paired, list[float] | None]:
    if ta is None or tb is None:
        return Paired(name, False, reason=f"only run {'B' if ta is None else 'A'} scored task {name}"), None
    ids_a, ids_b = ta.get("item_ids") or [], tb.get("item_ids") or []
    if not ids_a or not ids_b:
        return Paired(name, False, reason="no per-item outcomes recorded (a result from before per-item "
                                          "outcomes, or an lm-eval task)"), None
    pairs = _common(ids_a, ids_b)
    if not pairs:
        return Paired(name, False, reason="the runs scored different items (no item in common)"), None
    sa, sb = ta["item_scores"], tb["item_scores"]
    xa, xb = [float(sa[i]) for i, _ in pairs], [float(sb[j]) for _, j in pairs]
    d = [y - x for x, y in zip(xa, xb)]
    means = resample_means(d, name)
    low, high = percentile_interval(means)
    n = len(d)
    p, disc = None, None
    if all(v in (0.0, 1.0) for v in xa + xb):
        disc = (sum(1 for x, y in zip(xa, xb) if x > y), sum(1 for x, y in zip(xa, xb) if y > x))
        p = mcnemar_exact(*disc)
    return Paired(name, True, n, sum(xa) / n, sum(xb) / n, sum(d) / n, low, high, p, disc), means


def _window_pair(name: str, ids_a: list, va: list, ids_b: list, vb: list, transform) -> Paired:
    if not va or not vb:
        return Paired(name, False, reason=f"no per-window {name} recorded for both runs")
    pairs = _common(ids_a[:len(va)], ids_b[:len(vb)])
    if not pairs:
        return Paired(name, False, reason="the runs were evaluated on different windows (none in common)")
    xa, xb = [va[i] for i, _ in pairs], [vb[j] for _, j in pairs]
    n = len(pairs)
    stats = []
    for idx in resample_indices(name, n):
        stats.append(transform(sum(map(xb.__getitem__, idx)) / n) - transform(sum(map(xa.__getitem__, idx)) / n))
    low, high = percentile_interval(stats)
    a, b = transform(sum(xa) / n), transform(sum(xb) / n)
    return Paired(name, True, n, a, b, b - a, low, high)


def paired_differences(result_a: dict, result_b: dict) -> dict:
    """Every paired difference of run B against run A: per task, the average accuracy, perplexity, KL."""
    tasks_a = {t["name"]: t for t in result_a.get("tasks") or []}
    tasks_b = {t["name"]: t for t in result_b.get("tasks") or []}
    names = list(tasks_a) + [n for n in tasks_b if n not in tasks_a]
    rows, draws = [], []
    for name in names:
        row, means = _task_pair(tasks_a.get(name), tasks_b.get(name), name)
        rows.append(row)
        if means is not None:
            draws.append((row, means))
    out = {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": LEVEL,
           "tasks": [r.to_dict() for r in rows]}
    if draws and len(draws) == len(rows):
        avg = [sum(m[k] for _, m in draws) / len(draws) for k in range(BOOTSTRAP_RESAMPLES)]
        low, high = percentile_interval(avg)
        out["avg_accuracy"] = Paired("average accuracy", True, sum(r.n for r, _ in draws),
                                     sum(r.a for r, _ in draws) / len(draws), sum(r.b for r, _ in draws) / len(draws),
                                     sum(r.delta for r, _ in draws) / len(draws), low, high).to_dict()
    else:
        out["avg_accuracy"] = Paired("average accuracy", False,
                                     reason="not every task is paired" if rows else "no tasks").to_dict()
    wa, wb = result_a.get("windows") or {}, result_b.get("windows") or {}
    ids_a, ids_b = wa.get("ids") or [], wb.get("ids") or []
    if wa.get("tokens") != wb.get("tokens") and ids_a and ids_b:
        why = "the runs' evaluation windows have different lengths"
        out["perplexity"] = Paired("perplexity", False, reason=why).to_dict()
        out["kl"] = Paired("kl", False, reason=why).to_dict()
    else:
        out["perplexity"] = _window_pair("perplexity", ids_a, wa.get("nll") or [], ids_b, wb.get("nll") or [],
                                         math.exp).to_dict()
        out["kl"] = _window_pair("kl", ids_a, wa.get("kl") or [], ids_b, wb.get("kl") or [], lambda v: v).to_dict()
    return out


def against_baseline(runs: list[dict], baseline_id: str | None = None) -> list[dict | None]:
    """Per run dict (with "result"), its paired differences from the baseline run (None for the
    baseline itself, or when either has no result)."""
    ids = [r["run_id"] for r in runs]
    base = runs[ids.index(baseline_id) if baseline_id in ids else 0]
    out = []
    for r in runs:
        if r is base or not r.get("result") or not base.get("result"):
            out.append(None)
        else:
            out.append({"baseline": base["run_id"], **paired_differences(base["result"], r["result"])})
    return out


@dataclass(frozen=True)
class Spread:
    """Mean ± sample standard deviation of a group's values (sd None for n < 2)."""

    mean: float | None
    sd: float | None
    n: int

    def text(self, fmt: str = "{:.3f}") -> str:
        if self.mean is None:
            return "-"
        if self.sd is None:
            return fmt.format(self.mean) + f" (n={self.n})"
        return f"{fmt.format(self.mean)} ± {fmt.format(self.sd)} (n={self.n})"


def spread(values) -> Spread:
    known = [float(v) for v in values if v is not None]
    if not known:
        return Spread(None, None, 0)
    return Spread(statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else None, len(known))


def without_seeds(recipe):
    """The recipe with every `seed` key removed (at any depth): repeats of one recipe over seeds share it."""
    if isinstance(recipe, dict):
        return {k: without_seeds(v) for k, v in recipe.items() if k != "seed"}
    if isinstance(recipe, list):
        return [without_seeds(v) for v in recipe]
    return recipe
