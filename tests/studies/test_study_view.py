"""The study page's figures: best grid point at ≤ B bits and how sure, the grid table, the Pareto chart
with sd error bars."""

from __future__ import annotations

from moeq.app.study_view import best_text, format_study, pareto_figure


def _m(mean, sd, n):
    return {"mean": mean, "sd": sd, "n": n}


def _row(point, bits, acc, sd, n=3, kl=0.01):
    return {"point": point, "seeds": list(range(n)), "statuses": ["succeeded"] * n, "runs": [],
            "avg_weight_bits": _m(bits, 0.0, n), "avg_accuracy": _m(acc, sd, n), "perplexity": _m(None, None, 0),
            "kl": _m(kl, 0.001, n)}


GRID = [_row({"bits": "W2A16", "techniques": "gptq"}, 2.0, 0.60, 0.02),
        _row({"bits": "W3A16", "techniques": "gptq"}, 3.0, 0.70, 0.01),
        _row({"bits": "W3A16", "techniques": "agq"}, 3.0, 0.69, 0.02),
        _row({"bits": "W4A16", "techniques": "gptq"}, 4.0, 0.80, 0.01)]
STUDY = {"study_id": "s" * 32, "name": "", "state": "finished", "progress": "12 of 12", "model": "m", "user": "local",
         "project": "default", "created_at": "2026-12-06T10:00:00", "estimate_s": 600.0,
         "counts": {"succeeded": 12, "failed": 0, "cancelled": 0, "running": 0, "queued": 0}, "grid": GRID, "runs": []}


def test_best_recipe_at_a_bit_budget_and_how_sure():
    assert best_text(STUDY, 3.0).startswith("best at ≤ 3 bits: bits=W3A16 techniques=gptq — average accuracy "
                                            "0.700 ± 0.010 (n=3); not sure: the runner-up (bits=W3A16 "
                                            "techniques=agq) is 0.010 behind, within one sd (0.020)")
    assert "ahead of the runner-up (bits=W3A16 techniques=gptq) by 0.100, more than one sd" in best_text(STUDY, 4.5)
    assert best_text(STUDY, 2.0).endswith("the only grid point that fits")
    assert best_text(STUDY, 1.0) == "no finished grid point at ≤ 1 bits"


def test_how_sure_counts_the_seeds_the_best_point_wins():
    runs = [{"run_id": f"{p}{s}", "status": "succeeded", "point": {"seed": s}, "avg_accuracy": acc}
            for p, accs in (("a", (0.70, 0.71, 0.69)), ("b", (0.69, 0.70, 0.70))) for s, acc in enumerate(accs)]
    grid = [dict(_row({"techniques": "gptq"}, 3.0, 0.70, 0.01), runs=["a0", "a1", "a2"]),
            dict(_row({"techniques": "agq"}, 3.0, 0.6967, 0.006), runs=["b0", "b1", "b2"])]
    assert best_text({**STUDY, "grid": grid, "runs": runs}, 3.0).endswith("; better on 2 of 3 seeds")


def test_grid_text_and_pareto_error_bars():
    text = format_study(STUDY)
    assert "12 of 12 finished" in text and "0.700 ± 0.010 (n=3)" in text and "estimated 10.0 worker-minutes" in text
    fig = pareto_figure(STUDY, "avg_accuracy")
    assert list(fig.data[0].error_y.array) == [0.02, 0.01, 0.02, 0.01]
    assert [(x, y) for x, y in zip(fig.data[1].x, fig.data[1].y)] == [(2.0, 0.6), (3.0, 0.7), (4.0, 0.8)]
