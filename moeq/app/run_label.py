"""How a run is named wherever it is listed: recipe, all-weights bits beside the recipe's nominal
bits (a "W3" router-norm run may be 3.111 bits over all weights), and the seed (repeats differ only there)."""

from __future__ import annotations

from moeq.db.repository.results import nominal_bits


def nominal(r: dict) -> str | None:
    return r.get("nominal_bits") or nominal_bits(r.get("recipe"))


MODEL_LABEL_CHARS = 22  # what the runs table's model column shows without cutting (1440 px window)


def model_label(ref: str | None, width: int = MODEL_LABEL_CHARS) -> str:
    """A model as a narrow column can show it: zoo names as they are; a path by its end, which is what
    tells checkpoints apart ('/data/ckpt/mixtral-8x7b-it' → '…/ckpt/mixtral-8x7b-it'; a last
    folder longer than `width` keeps its own end). The full reference is in the run card."""
    ref = ref or "-"
    if len(ref) <= width:
        return ref
    parts = [p for p in ref.replace("\\", "/").split("/") if p]
    tail = parts[-1] if parts else ref
    if len(parts) > 1 and len(parts[-2]) + len(tail) + 3 <= width:
        tail = f"{parts[-2]}/{tail}"
    return "…/" + tail if len(tail) + 2 <= width else "…" + tail[-(width - 1):]


def seed_of(r: dict):
    seed = r.get("seed")
    return seed if seed is not None else (r.get("recipe") or {}).get("seed")


def bits_text(r: dict) -> str:
    """'3.111 bits (nominal W3)'; before a result: 'nominal W3'."""
    avg = r.get("avg_weight_bits")
    if avg is None:
        avg = ((r.get("result") or r).get("bits") or {}).get("avg_weight_bits")
    nom = nominal(r)
    if avg is None:
        return f"nominal {nom}" if nom else "bits -"
    return f"{avg:.3f} bits" + (f" (nominal {nom})" if nom else "")


def seed_text(r: dict) -> str:
    seed = seed_of(r)
    return "seed -" if seed is None else f"seed {seed}"


def run_title(r: dict, with_model: bool = True) -> str:
    """'1a2b3c4d · testbed-mixtral · W4A16 g128 gptq router=fp · 4.000 bits (nominal W4) · seed 0'."""
    parts = [r["run_id"][:8]] + ([model_label(r.get("model"), 40)] if with_model else [])
    return " · ".join([*parts, r.get("recipe_summary") or "-", bits_text(r), seed_text(r)])
