"""`moeq export SAVED_DIR OUT_DIR [--format compressed-tensors|hf]` — hand a quantized model to
serving engines: compressed-tensors pack-quantized (vLLM, llm-compressor) or a plain dequantized
Hugging Face checkpoint (works everywhere, FP-equivalent size)."""

from __future__ import annotations

import shutil
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model saved with 'moeq run --save' for serving")
    p.add_argument("saved_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--format", choices=["compressed-tensors", "hf"], default="compressed-tensors")
    p.set_defaults(handler=handle)


def handle(args, settings) -> int:
    from quant_core.io.atomic import check_target, write_dir_atomically

    check_target(args.out_dir)  # before any work: an existing non-empty folder is never touched
    from quant_core.io.load import verify_checksums

    verify_checksums(args.saved_dir)

    def fill(tmp: Path) -> None:
        if args.format == "hf":
            for f in args.saved_dir.iterdir():
                if f.is_file() and not f.name.startswith(("moeq", "checksums")):
                    shutil.copy2(f, tmp / f.name)
        else:
            from quant_core.io.export_ct import export_compressed_tensors

            export_compressed_tensors(args.saved_dir, tmp)

    write_dir_atomically(args.out_dir, fill)
    print(f"{args.format} checkpoint written to {args.out_dir}")
    return 0
