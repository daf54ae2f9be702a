"""The recipe contract: parse, validate and serialize, torch-free.

`parse_recipe(dict)` returns a frozen `Recipe` or raises `RecipeError` naming the key. Checks that
need the model (group size divides the dimension, family supports a technique) live in
`validate_for_model`, which takes the adapter's description of the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from moeq.contract.config_parse import build, to_dict
from moeq.contract.errors import RecipeError
from moeq.contract.techniques import (ALIASES, TECHNIQUES, GptqConfig, RtnConfig, order_key, technique_of,
                             weight_quantizers)

WEIGHT_BITS = (2, 3, 4, 8, 16)
ACT_BITS = (4, 8, 16)
MAX_RECIPE_BYTES = 64 * 1024


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise RecipeError(key, message)


@dataclass(frozen=True)
class WeightSpec:
    bits: int = 4
    group_size: int | None = 128  # None → one scale per output channel
    symmetric: bool = True
    clip_ratio: float = 1.0

    def __post_init__(self) -> None:
        _check(self.bits in WEIGHT_BITS, "bits", f"must be one of {WEIGHT_BITS}, got {self.bits}")
        _check(self.group_size is None or self.group_size >= 2,
               "group_size", f"must be 'channel' (JSON null: one scale per output channel) or an integer >= 2, "
               f"got {self.group_size}")
        _check(0.0 < self.clip_ratio <= 1.0, "clip_ratio", "must be in (0, 1]")


@dataclass(frozen=True)
class ActivationSpec:
    bits: int = 16
    clip_ratio: float = 0.9
    symmetric: bool = False

    def __post_init__(self) -> None:
        _check(self.bits in ACT_BITS, "bits", f"must be one of {ACT_BITS}, got {self.bits}")
        _check(0.0 < self.clip_ratio <= 1.0, "clip_ratio", "must be in (0, 1]")


@dataclass(frozen=True)
class RouterSpec:
    """How the router is treated: kept FP, quantized plainly (RTN), with EAQuant alignment, or by
    GPTQ on its calibration inputs (MoEQuant)."""

    mode: Literal["fp", "quantize", "align", "gptq"] = "fp"
    bits: int | None = 8  # None: the recipe's weight bits (8 when weights stay 16-bit), resolved by parse_recipe
    act_bits: int | None = 8  # None: the recipe's activation bits
    beta: float = 0.0
    lam: float = 0.0
    clip_min: float = 0.35  # the authors' router clip grid: 0.35 … 1.0 in 101 ratios (docs/methods.md)
    clip_steps: int = 101
    # "align" clip search: one ratio per row by coordinate descent on 8192 random tokens (moeq's), or one
    # ratio for the whole router on the mean calibration sequence (EAQuant's released per_channel_kl_top0)
    search: Literal["row", "single"] = "row"
    symmetric: bool = True  # the router's weight grid (EAQuant's released router: asymmetric)

    def __post_init__(self) -> None:
        _check(self.bits is None or self.bits in (2, 3, 4, 8), "bits",
               f"must be null (the weight bits) or one of (2, 3, 4, 8), got {self.bits}")
        _check(self.act_bits is None or self.act_bits in ACT_BITS, "act_bits",
               f"must be null (the activation bits) or one of {ACT_BITS}")
        _check(0.0 <= self.beta <= 1.0, "beta", "must be in [0, 1]")
        _check(self.lam >= 0.0, "lam", "must be >= 0")
        _check(0.0 < self.clip_min <= 1.0, "clip_min", "must be in (0, 1]")
        _check(1 <= self.clip_steps <= 1000, "clip_steps", "must be in [1, 1000]")


@dataclass(frozen=True)
class BalanceSpec:
    """EAQuant calibration balance. cap "total": about r·k·N/n routed tokens per expert over the N
    calibration tokens, topped up from `extra_samples` reserve windows (moeq's); cap "sequence": at most
    int(k/n · seq_len · r) tokens per expert (the authors' `expert_token_num`), no top-up. `smoothing`:
    whether the balanced sets also feed the smoothing statistics (the authors' do not)."""

    r: float = 2.0
    select: Literal["gate", "random", "first"] = "gate"  # "first": first-come, in calibration order
    extra_samples: int = 64
    cap: Literal["total", "sequence"] = "total"
    smoothing: bool = True

    def __post_init__(self) -> None:
        _check(0.0 <= self.r <= 64.0, "r", "must be in [0, 64]")
        _check(0 <= self.extra_samples <= 100_000, "extra_samples", "must be in [0, 100000]")


@dataclass(frozen=True)
class EbssSpec:
    """MoEQuant expert-balanced self-sampling (beam search scored by NLL + σ/τ)."""

    width: int = 4
    tau: float = 1.2
    cache: bool = True
    candidates: Literal["top", "sample"] = "top"  # extend beams by the w most likely tokens, or sample w
    # u_e in σ: expert e's count of the candidate's routed tokens (Algorithm 1's "expert activations"), or
    # its share of them (moeq before issue 26: a token then moves σ by O(1/len) and the NLL term decides)
    usage: Literal["count", "fraction"] = "count"

    def __post_init__(self) -> None:
        _check(1 <= self.width <= 64, "width", "must be in [1, 64]")
        _check(self.tau > 0.0, "tau", "must be > 0")


@dataclass(frozen=True)
class CalibrationSpec:
    source: str = "auto"  # "auto" | "testbed" | "random" | "file:<path>"
    samples: int = 128
    seq_len: int = 512
    sampler: Literal["uniform", "ebss"] = "uniform"
    balance: BalanceSpec | None = None
    ebss: EbssSpec = field(default_factory=EbssSpec)

    def __post_init__(self) -> None:
        _check(1 <= self.samples <= 100_000, "samples", f"must be in [1, 100000], got {self.samples}")
        _check(8 <= self.seq_len <= 32_768, "seq_len", f"must be in [8, 32768], got {self.seq_len}")
        _check(self.source in ("auto", "testbed", "random") or self.source.startswith("file:"),
               "source", "must be 'auto', 'testbed', 'random' or 'file:<path>'")


@dataclass(frozen=True)
class AllocationSpec:
    method: Literal["router_norm", "uniform", "random"] = "router_norm"
    avg_bits: float = 3.0
    tiers: tuple[int, ...] = (2, 4)
    zeta: float = 3.0
    score: Literal["final_norm", "norm_change"] = "final_norm"
    seed: int = 0
    other_bits: int = 4  # non-expert linears use one fixed width


    def __post_init__(self) -> None:
        _check(2 <= len(self.tiers) <= 3, "tiers", "must list 2 or 3 bit widths")
        _check(all(t in (2, 3, 4, 8) for t in self.tiers), "tiers", "each tier must be one of (2, 3, 4, 8)")
        _check(list(self.tiers) == sorted(set(self.tiers)), "tiers", "must be strictly increasing")
        _check(self.tiers[0] <= self.avg_bits <= self.tiers[-1], "avg_bits",
               f"must lie within the tiers [{self.tiers[0]}, {self.tiers[-1]}], got {self.avg_bits}")
        _check(self.zeta >= 1.0, "zeta", "must be >= 1")
        _check(self.other_bits in (2, 3, 4, 8, 16), "other_bits", "must be one of (2, 3, 4, 8, 16)")


@dataclass(frozen=True)
class EvalSpec:
    source: str = "auto"  # text for perplexity/KL/routing: "auto" | "testbed" | "random" | "file:<path>"
    perplexity: bool = True
    tasks: tuple[str, ...] = ("testbed",)
    routing: bool = True
    limit: int | None = None
    seq_len: int = 256
    ppl_windows: int = 32
    kl_tokens: int = 4096
    lm_eval_include: str | None = None  # directory of local lm-eval task YAMLs

    def __post_init__(self) -> None:
        _check(self.limit is None or self.limit >= 1, "limit", "must be null or >= 1")
        _check(8 <= self.seq_len <= 32_768, "seq_len", "must be in [8, 32768]")
        _check(1 <= self.ppl_windows <= 100_000, "ppl_windows", "must be in [1, 100000]")
        for t in self.tasks:
            _check(isinstance(t, str) and (t == "testbed" or t.startswith(("file:", "lm_eval:"))), "tasks",
                   f"unknown task source {t!r:.80} (use 'testbed', 'file:<path.jsonl>' or 'lm_eval:<task>')")
        _check(len(set(self.tasks)) == len(self.tasks), "tasks", "a task is listed twice")
        _check(self.source in ("auto", "testbed", "random") or self.source.startswith("file:"),
               "source", "must be 'auto', 'testbed', 'random' or 'file:<path>'")


@dataclass(frozen=True)
class MoqeSpec:
    """MoQE: quantized variants (finished run ids or recipes) mixed by a small learned router."""

    variants: tuple[Any, ...] = ()
    encoder_layers: int = 1
    epochs: int = 30
    alpha: float = 0.02
    train_samples: int = 256
    eval_samples: int = 128

    def __post_init__(self) -> None:
        _check(len(self.variants) >= 2, "variants", "needs at least 2 variants")
        _check(1 <= self.encoder_layers <= 2, "encoder_layers", "must be 1 or 2")


@dataclass(frozen=True)
class Recipe:
    model: str = ""
    weights: WeightSpec = field(default_factory=WeightSpec)
    activations: ActivationSpec = field(default_factory=ActivationSpec)
    router: RouterSpec = field(default_factory=RouterSpec)
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    techniques: tuple = ()
    allocation: AllocationSpec | None = None
    eval: EvalSpec = field(default_factory=EvalSpec)
    moqe: MoqeSpec | None = None
    seed: int = 0

    def technique(self, cls: type) -> Any:
        """The configured technique of type `cls`, or None."""
        return next((t for t in self.techniques if isinstance(t, cls)), None)

    @property
    def weight_quantizer(self) -> RtnConfig | GptqConfig | None:
        return next((t for t in self.techniques if isinstance(t, weight_quantizers())), None)

    @property
    def needs_calibration(self) -> bool:
        return any(technique_of(t).needs_calibration for t in self.techniques) or \
            self.router.mode in ("align", "gptq") or self.calibration.balance is not None

    def to_dict(self) -> dict:
        d = to_dict(self)
        d["techniques"] = [technique_to_dict(t) for t in self.techniques]
        d["router"] = to_dict(self.router)
        return d


def technique_to_dict(cfg: Any) -> dict:
    return {"name": technique_of(cfg).name, **to_dict(cfg)}


def _parse_technique(item: Any, key: str) -> Any:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or "name" not in item:
        raise RecipeError(key, "each technique must be an object with a 'name'")
    opts = dict(item)
    name = opts.pop("name")
    if name in ALIASES:
        name, defaults = ALIASES[name]
        opts = {**defaults, **opts}
    if name not in TECHNIQUES:
        from moeq.contract.presets import PRESETS
        from moeq.contract.suggest import did_you_mean

        known = sorted([*TECHNIQUES, *ALIASES])
        if name in PRESETS:  # presets are expanded by the CLI and the form, never inside a recipe
            raise RecipeError(f"{key}.name", f"{name!r} is a preset, not a technique: choose it with "
                              f"`--techniques {name}` or the Launch form's preset field, which write its "
                              "techniques and settings into the recipe")
        raise RecipeError(f"{key}.name", f"unknown technique {name!r}{did_you_mean(name, [*known, *PRESETS])} "
                          f"(techniques: {', '.join(known)}; presets: {', '.join(sorted(PRESETS))})")
    return build(TECHNIQUES[name], opts, key)


def _parse_router(value: Any) -> RouterSpec:
    if isinstance(value, str):
        value = {"mode": value}
    return build(RouterSpec, value, "router")


def _router_bits(router: RouterSpec, recipe: Recipe) -> RouterSpec:
    """Null router widths follow the recipe's: the weight bits (8 when weights stay 16-bit), the
    activation bits (MoEQuant quantizes the router like every other linear)."""
    bits = router.bits if router.bits is not None else (recipe.weights.bits if recipe.weights.bits < 16 else 8)
    act = router.act_bits if router.act_bits is not None else recipe.activations.bits
    return replace(router, bits=bits, act_bits=act)


def parse_recipe(data: Any) -> Recipe:
    """Validate a recipe dict (or JSON text) and return the frozen Recipe."""
    from moeq.contract import limits

    limits.check_raw(data)
    if isinstance(data, (str, bytes)):
        data = limits.loads(data)
        limits.check_raw(data)
    if not isinstance(data, dict):
        raise RecipeError("<root>", "a recipe must be a JSON object")
    data = dict(data)
    techniques = data.pop("techniques", [])
    router = data.pop("router", "fp")
    if not isinstance(techniques, list):
        raise RecipeError("techniques", "must be a list")
    recipe = build(Recipe, data, "")
    parsed = tuple(_parse_technique(t, f"techniques[{i}]") for i, t in enumerate(techniques))
    recipe = replace(recipe, techniques=_canonical(parsed, recipe), router=_router_bits(_parse_router(router), recipe))
    _check_consistency(recipe)
    limits.check_bounds(recipe)
    if recipe.moqe is not None:
        moqe_variants(recipe)
    return recipe


def _canonical(techniques: tuple, recipe: Recipe) -> tuple:
    seen: dict[type, int] = {}
    for i, t in enumerate(techniques):
        if type(t) in seen:
            raise RecipeError(f"techniques[{i}]", f"technique listed twice (also at [{seen[type(t)]}])")
        seen[type(t)] = i
    quantizers = [t for t in techniques if isinstance(t, weight_quantizers())]
    if len(quantizers) > 1:
        raise RecipeError("techniques", "choose one weight quantizer: 'rtn' or 'gptq', not both")
    if not quantizers and (recipe.weights.bits < 16 or recipe.allocation is not None):
        techniques = (*techniques, RtnConfig())
    return tuple(sorted(techniques, key=order_key))


def _check_consistency(recipe: Recipe) -> None:
    if recipe.allocation is not None:
        _check(recipe.weights.bits < 16, "allocation", "needs quantized weights (weights.bits < 16)")
    if recipe.weights.bits == 16 and recipe.weight_quantizer is not None and recipe.allocation is None:
        transforms = any(not isinstance(t, weight_quantizers()) for t in recipe.techniques)
        if recipe.activations.bits == 16 and recipe.router.mode == "fp" and recipe.moqe is None and not transforms:
            raise RecipeError("weights.bits", "16-bit weights with a weight quantizer quantize nothing")
    duq = next((t for t in recipe.techniques if type(t).__name__ == "DuQuantConfig"), None)
    if duq is not None and duq.moe_input == "expert" and isinstance(recipe.weight_quantizer, GptqConfig):
        raise RecipeError("techniques", "duquant moe_input 'expert' (per-expert input transforms) works with rtn, "
                          "EAQuant's quantizer; with gptq use moe_input 'shared'")
    if recipe.calibration.sampler == "ebss" and recipe.calibration.source not in ("auto",):
        raise RecipeError("calibration.source", "EBSS samples from the model itself; leave source as 'auto'")


def quantized_recipes(recipe: Recipe) -> list[tuple[str, Recipe]]:
    """(recipe key prefix, recipe) of every recipe a run quantizes with: the recipe itself, or for a MoQE
    run each recipe variant, as the worker builds it ('moqe.variants[i].'; saved-model variants are done)."""
    if recipe.moqe is None:
        return [("", recipe)]
    return [(f"moqe.variants[{i}].", v) for i, v in enumerate(moqe_variants(recipe)) if isinstance(v, Recipe)]


def moqe_variants(recipe: Recipe) -> list[Recipe | str]:
    """Each MoQE variant as a full recipe — the run's model, calibration, evaluation and seed plus the
    variant's own keys — or, for a 'path:<dir>' variant, the saved model directory. Errors name
    `moqe.variants[i]…`; parse_recipe calls this, so a bad variant is refused before queuing."""
    from moeq.contract.presets import merge

    d = recipe.to_dict()
    ev = {**d["eval"], "ppl_windows": recipe.moqe.eval_samples}  # what the run evaluates every variant on
    shared = {"model": recipe.model, "calibration": d["calibration"], "eval": ev, "seed": recipe.seed}
    out: list[Recipe | str] = []
    for i, variant in enumerate(recipe.moqe.variants):
        key = f"moqe.variants[{i}]"
        if isinstance(variant, str) and variant.startswith("path:"):
            out.append(variant[5:])
            continue
        if not isinstance(variant, dict):
            raise RecipeError(key, f"must be a recipe object or 'path:<saved model dir>', got {variant!r}")
        if "moqe" in variant or "model" in variant:
            raise RecipeError(key, "a variant takes the run's model; no 'model' or nested 'moqe'")
        try:
            out.append(parse_recipe(merge(shared, variant)))
        except RecipeError as exc:
            raise RecipeError(f"{key}.{exc.key}", exc.detail) from None
    return out


def parse_bits(spec: str) -> dict:
    """'W4A16' / 'W3A4g32' / 'W4A8g-1' → partial recipe dict (weights + activations)."""
    m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)(?:[Gg](-?\d+))?", spec.strip())
    if not m:
        raise RecipeError("bits", f"cannot parse {spec!r}; expected e.g. W4A16, W3A4, W4A16g32")
    weights: dict[str, Any] = {"bits": int(m.group(1))}
    if m.group(3) is not None:
        g = int(m.group(3))
        weights["group_size"] = None if g <= 0 else g
    return {"weights": weights, "activations": {"bits": int(m.group(2))}}


def recipe_summary(recipe: Recipe) -> str:
    """One line such as 'W4A16 g128 gptq+rotation router=fp' for tables and logs; a MoQE run lists
    its variants: 'MoQE[W3A16 pc rtn router=fp | W3A16 pc gptq router=fp]'."""
    if recipe.moqe is not None:
        parts = [f"path:{v}" if isinstance(v, str) else recipe_summary(v) for v in moqe_variants(recipe)]
        return f"MoQE[{' | '.join(parts)}]"
    w = recipe.weights
    g = ("pc" if w.group_size is None else f"g{w.group_size}") + ("" if w.symmetric else " asym")

    def label(t) -> str:
        d = technique_to_dict(t)
        extra = [k for k in ("clip_search", "affinity", "down_proj") if d.get(k)]
        if d["name"] == "smooth":
            extra[:0] = [d["aggregate"]] + ([d["readers"]] if d.get("readers", "all") != "all" else [])
        return d["name"] + (f"({','.join(extra)})" if extra else "")
    names = "+".join(label(t) for t in recipe.techniques) or "fp"
    a = recipe.allocation
    alloc = "" if a is None else f" alloc=uniform(other W{a.other_bits})" if a.method == "uniform" \
        else f" alloc={a.method}@{a.avg_bits}"
    return f"W{w.bits}A{recipe.activations.bits} {g} {names} router={recipe.router.mode}{alloc}"
