"""Pure tensor math: (weight, statistics, scheme) → (quantized weight, scales, zeros). No models, no I/O."""
