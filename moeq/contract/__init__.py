"""The torch-free contract every layer shares: recipes and technique configs, the vocabulary the
shells show, presets, errors, model references, family descriptions and the zoo catalog.

Nothing here imports torch, transformers or triton, nor any other project package: `moeq/app/`, `moeq/db/`,
`moeq/jobs/` and `moeq/quant_core/` all import `moeq.contract`, never the other way round (docs/architecture.md;
enforced by tests/test_imports.py).
"""

__version__ = "0.1.0"
