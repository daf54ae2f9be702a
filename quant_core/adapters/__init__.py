"""Model-family adapters: data descriptions (torch-free) and the runtime view over a model.

`from quant_core.adapters import get_family, describe_dir` stays torch-free; the runtime view
lives in `quant_core.adapters.model` (imports torch).
"""

from quant_core.adapters.describe import ModelInfo, describe_config, describe_dir, get_family, read_config
from quant_core.adapters.families import FAMILIES
from quant_core.adapters.spec import FamilySpec

__all__ = ["FAMILIES", "FamilySpec", "ModelInfo", "describe_config", "describe_dir", "get_family", "read_config"]
