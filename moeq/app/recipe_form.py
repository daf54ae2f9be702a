"""Launch-form values → recipe dict (pure; unit-tested). The page shows the JSON before launch."""

from __future__ import annotations

from dataclasses import dataclass, field

from moeq.contract.presets import expand, merge
from moeq.contract.vocabulary import form_techniques, variant_words

# The technique checkboxes, preset names and MoQE variant words come from moeq.contract.vocabulary (derived
# from the technique registry); this module only turns form values into a recipe dict.


@dataclass
class LaunchForm:
    model: str
    weight_bits: int = 4
    group_size: str = "128"
    symmetric: bool = True
    act_bits: int = 16
    router: str = "fp"
    preset: str = "none"
    techniques: list[str] = field(default_factory=lambda: ["gptq"])
    calib_source: str = "auto"
    calib_samples: int = 128
    calib_seq_len: int = 512
    sampler: str = "uniform"
    balance_r: float = 0.0
    allocation: str = "none"
    avg_bits: float = 3.0
    tiers: str = "2,3,4"
    eval_tasks: str = "testbed"
    eval_limit: int = 0
    seed: int = 0
    moqe_variants: str = ""


def form_to_recipe(f: LaunchForm) -> dict:
    """The recipe the form describes; a preset contributes its techniques and settings first."""
    group = None if str(f.group_size).lower() in ("channel", "none", "-1", "0") else int(f.group_size)
    recipe: dict = {
        "model": f.model.strip(),
        "weights": {"bits": int(f.weight_bits), "group_size": group, "symmetric": bool(f.symmetric)},
        "activations": {"bits": int(f.act_bits)},
        "router": f.router,
        "calibration": {"source": f.calib_source, "samples": int(f.calib_samples), "seq_len": int(f.calib_seq_len),
                        "sampler": f.sampler, "balance": {"r": float(f.balance_r)} if f.balance_r > 0 else None},
        "techniques": [],
        "allocation": None,
        "eval": {"tasks": [t.strip() for t in f.eval_tasks.split(",") if t.strip()],
                 "limit": int(f.eval_limit) or None},
        "seed": int(f.seed),
    }
    if f.preset and f.preset != "none":
        preset = expand([f.preset])
        recipe = merge(recipe, {k: v for k, v in preset.items() if k != "techniques"})
        recipe["techniques"] = preset["techniques"]
    own = form_techniques(list(f.techniques))
    kinds = {t["name"] for t in recipe["techniques"]}
    for t in own:  # the form's explicit choices override the preset's technique of the same kind
        same = {"rtn", "gptq"} if t["name"] in ("rtn", "gptq") else {t["name"]}
        recipe["techniques"] = [x for x in recipe["techniques"] if x["name"] not in same] + [t]
        kinds.add(t["name"])
    if f.allocation != "none":
        tiers = [int(x) for x in f.tiers.split(",") if x.strip()]
        recipe["allocation"] = {"method": f.allocation, "avg_bits": float(f.avg_bits), "tiers": tiers}
    if f.moqe_variants.strip():
        return _moqe_recipe(recipe, f.moqe_variants)
    return recipe


def _moqe_recipe(recipe: dict, text: str) -> dict:
    """MoQE: each ';'-separated variant is '+'-joined technique words at the form's weight setting, or a
    saved model: 'path:<dir>' or 'run:<id>'."""
    words = variant_words()
    variants: list = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        if part.startswith(("path:", "run:")):  # a saved model, or a run's (admission resolves run:<id>)
            variants.append(part)
            continue
        said = [w.strip().lower() for w in part.split("+") if w.strip()]
        unknown = [w for w in said if w not in words]
        if unknown:
            raise ValueError(f"MoQE variant {part!r}: unknown {unknown[0]!r} (use {', '.join(words)})")
        variants.append({"weights": dict(recipe["weights"]), "activations": dict(recipe["activations"]),
                         "techniques": form_techniques([words[w] for w in said])})
    keep = ("model", "calibration", "eval", "seed")
    return {**{k: recipe[k] for k in keep}, "moqe": {"variants": variants}}
