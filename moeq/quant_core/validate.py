"""Recipe checks that need the loaded model: group sizes divide every quantized input dimension,
the family can take each technique. Run before any work so a bad recipe fails in seconds."""

from __future__ import annotations

from torch import nn

from moeq.quant_core.adapters.model import MoEModel, get_path
from moeq.contract.coverage import check_recipe_family
from moeq.contract.errors import RecipeError
from moeq.contract.recipe import Recipe
from moeq.contract.techniques import DuQuantConfig, RotationConfig


def quantized_input_dims(moe: MoEModel) -> dict[str, int]:
    """Input dimension of every weight the pipeline may quantize, keyed by a readable name."""
    dims: dict[str, int] = {}
    for i, layer in enumerate(moe.layers):
        attn = get_path(layer, moe.token_mixer(i))
        for name, mod in attn.named_modules():
            if isinstance(mod, nn.Linear):
                dims[f"layer {i} attention {name}"] = mod.in_features
        for name, mod in moe.attn_expert_stacks(i).items():
            dims[f"layer {i} attention experts {name}"] = int(mod.weight.shape[2])
        block = moe.blocks.get(i)
        if block is None:
            for name, mod in get_path(layer, moe.spec.mlp).named_modules():
                if isinstance(mod, nn.Linear):
                    dims[f"layer {i} mlp {name}"] = mod.in_features
            continue
        dims[f"layer {i} experts gate_up"] = block.experts.hidden_size
        dims[f"layer {i} experts down"] = block.experts.intermediate_size
        for name, mod in block.shared_linears().items():
            dims[f"layer {i} shared expert {name}"] = mod.in_features
    return dims


def validate_for_model(recipe: Recipe, moe: MoEModel) -> None:
    check_recipe_family(recipe, moe.spec)
    g = recipe.weights.group_size
    if recipe.weights.bits < 16 and g is not None:
        from moeq.contract.group_fit import COMMON_GROUPS

        dims = quantized_input_dims(moe)
        bad = {name: dim for name, dim in dims.items() if dim % g}
        if bad:  # every misfit at once, and the sizes that fit them all (CLI spelling)
            fit = [str(c) for c in COMMON_GROUPS if all(d % c == 0 for d in dims.values())] + ["channel"]
            said = ", ".join(f"{dim} of {name}" for name, dim in list(bad.items())[:6]) + \
                (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
            raise RecipeError("weights.group_size", f"group size {g} does not divide the input dimension {said}; "
                              f"group sizes that fit every width: {', '.join(fit)}")
    if recipe.technique(RotationConfig) is not None and not moe.spec.rotation:
        raise RecipeError("techniques", f"family {moe.spec.name} cannot take 'rotation'")
    du = recipe.technique(DuQuantConfig)
    if du is not None:
        d = moe.config.hidden_size
        b = du.block_size
        for name, dim in {"hidden size": d, **quantized_input_dims(moe)}.items():
            if dim > b and dim % b:
                raise RecipeError("duquant.block_size", f"must divide the {name} ({dim}) or be at least it; got {b}")
