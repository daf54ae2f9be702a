"""Weights stage: the weight quantizer (RTN or GPTQ) every linear of the layer walk is quantized
with. Its config is the method of the walk's `Scheme`; `moeq.quant_core.algorithms.weights` carries out
RTN (with optional clip search) and GPTQ (with Hessians the walk collects when the method is GPTQ)."""

from __future__ import annotations

from moeq.contract.techniques import GptqConfig, RtnConfig


def apply(q, cfg: RtnConfig | GptqConfig) -> RtnConfig | GptqConfig:
    return cfg
