"""Layer stage: SmoothQuant / router / EAQuant expert-aware smoothing folded into the norms
(docs/methods.md); at the attention inputs (unless `attention` is off) and at the MoE input."""

from __future__ import annotations

from moeq.quant_core.apply.hooks import LayerHooks, MoeInput
from moeq.contract.techniques import SmoothConfig


class SmoothingHooks(LayerHooks):
    wants_attention_stats = True
    chunked_experts = True  # experts read and rewritten through the quantizer's expert_access

    def __init__(self, q, cfg: SmoothConfig) -> None:
        self.q, self.cfg = q, cfg

    def attention(self, i, layer, attn, batches, stats, prefix):
        if not self.cfg.attention:
            return stats, False
        from moeq.quant_core.algorithms.smoothing import smooth_attention, smooth_v_o

        stats = smooth_attention(self.q.moe, i, stats, self.cfg, self.q.state)
        if self.cfg.v_o:
            stats = smooth_v_o(self.q.moe, i, stats, self.cfg, self.q.state)
        return stats, False

    def moe_input(self, i, block, site: MoeInput, prefix) -> None:
        from moeq.quant_core.algorithms.smoothing import smooth_moe

        q = self.q
        # the (balanced) per-expert token sets under the FP router feed the smoothing statistics (unless
        # `balance.smoothing` is off, as in the authors' code: their smoothing reads every routed token)
        bal = q.recipe.calibration.balance
        sets = q.routed(block, site.x, site.n_main, i) if bal is not None and bal.smoothing else None
        s = smooth_moe(q.moe, block, site.x[:site.n_main], self.cfg, q.state, sets, q.expert_access)
        site.x = (site.x.float() / s).to(site.x.dtype)
        site.x_t = site.x


def apply(q, cfg: SmoothConfig) -> SmoothingHooks:
    return SmoothingHooks(q, cfg)
