"""`moeq export SAVED_DIR OUT_DIR [--format compressed-tensors|hf]` — hand a quantized model to
serving engines: compressed-tensors pack-quantized (vLLM, llm-compressor) or a plain dequantized
Hugging Face checkpoint (works everywhere, FP-equivalent size)."""

from __future__ import annotations

from pathlib import Path

from moeq.jobs.export import EXPORT_FORMATS


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model saved with 'moeq run --save' for serving")
    p.add_argument("saved_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="compressed-tensors")
    p.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from moeq.jobs.export import export_saved

    export_saved(args.saved_dir, args.out_dir, args.format)
    print(f"{args.format} checkpoint written to {args.out_dir}")
    return 0
