"""The admission cost model: how much work a recipe asks of a worker, in parameter-tokens (torch-free).

One parameter-token is one token through one parameter (about two floating-point operations). A
run's work is the tokens it pushes through the model — calibration (EBSS: every beam), the FP
reference evaluation, each quantized model's evaluation and task items, MoQE's router-labelling
passes — times the parameters a token passes through, plus the MoQE router's own training (epochs ×
windows through a router of ~64 × hidden parameters). Everything multiplies: a MoQE run counts each
recipe variant's calibration and evaluation, every task on every model. Admission refuses a recipe
whose work is above the operator's budget (MOEQ_WORK_BUDGET, moeq.jobs.settings) in one line that
names the largest share.
"""

from __future__ import annotations

from moeq.contract.errors import RecipeError

TASK_ITEMS = 1000  # items assumed per task without eval.limit (lm-eval tasks are often larger; limit bounds them)
ROUTER_WIDTH = 64  # moeq.quant_core.moqe.router: hidden → 64 projection and a 64-wide encoder


def _task_tokens(ev) -> int:
    items = min(ev.limit, TASK_ITEMS) if ev.limit else TASK_ITEMS
    return len(ev.tasks) * items * ev.seq_len


def _calibration_tokens(recipe) -> int:
    cal = recipe.calibration
    if not recipe.needs_calibration:
        return 0
    tokens = cal.samples * cal.seq_len * (cal.ebss.width if cal.sampler == "ebss" else 1)
    if cal.balance is not None:
        tokens += cal.balance.extra_samples * cal.seq_len
    return tokens


def work_terms(recipe, active_params: int, hidden_size: int = 0) -> dict[str, int]:
    """Parameter-tokens per share of the run: {what: work}."""
    from moeq.contract.recipe import moqe_variants

    ev = recipe.eval
    if recipe.moqe is None:
        evaluation = ev.ppl_windows * ev.seq_len + _task_tokens(ev)
        return {"calibration": _calibration_tokens(recipe) * active_params,
                "evaluation (FP and quantized)": 2 * evaluation * active_params}
    m = recipe.moqe
    variants = moqe_variants(recipe)
    evaluation = m.eval_samples * ev.seq_len + _task_tokens(ev)
    calibration = sum(_calibration_tokens(v) for v in variants if not isinstance(v, str))
    return {f"calibration of {len(variants)} variants": calibration * active_params,
            f"evaluation of FP and {len(variants)} variants": (1 + len(variants)) * evaluation * active_params,
            "router labels": len(variants) * m.train_samples * ev.seq_len * active_params,
            "router training": m.epochs * m.train_samples * ev.seq_len * ROUTER_WIDTH * max(hidden_size, 1)}


def check_work(recipe, active_params: int, hidden_size: int, budget: float, model: str) -> int:
    """The recipe's work in parameter-tokens, or one RecipeError when it is above `budget`."""
    terms = work_terms(recipe, active_params, hidden_size)
    total = sum(terms.values())
    if total > budget:
        what, most = max(terms.items(), key=lambda kv: kv[1])
        raise RecipeError("<root>", f"asks for about {total:.2g} parameter-tokens of work on {model} "
                          f"({active_params:.2g} parameters per token; the largest share, {what}, is {most:.2g}); "
                          f"the budget is {budget:.2g} (the operator sets it with MOEQ_WORK_BUDGET)")
    return total
