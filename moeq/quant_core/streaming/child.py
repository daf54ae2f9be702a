"""`python -m moeq.quant_core.streaming.child RUN.json`: one run in a fresh process (used under a memory
cgroup by the memory test and the scale benchmark). RUN.json holds recipe, out, zoo_dir, cache_dir,
save_dir, stream, stream_chunk_experts; the result dict is written to `out` as JSON. `--baseline` only imports what a run
imports (and, given a model directory, builds its weightless skeleton)
and exits, to measure the interpreter's own footprint."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from moeq.quant_core.api import run
    from moeq.quant_core.context import RunContext
    from moeq.quant_core.streaming import pipeline  # noqa: F401

    if argv[0] == "--baseline":  # the libraries and the weightless model skeleton, no tensors
        if len(argv) > 1:
            from transformers import AutoConfig

            from moeq.quant_core.streaming.skeleton import _build_meta_model

            _build_meta_model(AutoConfig.from_pretrained(argv[1]), False)
        return 0
    spec = json.loads(Path(argv[0]).read_text())
    ctx = RunContext(zoo_dir=Path(spec["zoo_dir"]), cache_dir=Path(spec["cache_dir"]), stream=spec.get("stream", "auto"),
                     save_dir=Path(spec["save_dir"]) if spec.get("save_dir") else None, device=spec.get("device", "auto"),
                     stream_chunk_experts=spec.get("stream_chunk_experts", "auto"))
    t0 = time.perf_counter()
    result = run(spec["recipe"], ctx)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    Path(spec["out"]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
