"""MoQE: several quantized variants of one model as "quantization experts", picked per input by a
small router trained on which variant has the lowest loss (arXiv 2508.09204); docs/methods.md "MoQE"."""
