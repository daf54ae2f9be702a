"""FP-vs-quantized comparisons: next-token KL, routing agreement, routing KL, load."""

from __future__ import annotations

from moeq.quant_core.adapters.dispatch import Dispatch
from moeq.quant_core.functional.routing import RoutingRule, routing_distribution
from moeq.quant_core.evaluate.probe import ProbeResult


def token_kl(fp: ProbeResult, q: ProbeResult) -> float | None:
    """Mean per-token KL(p_fp ‖ p_q) of next-token distributions."""
    if fp.logprobs is None or q.logprobs is None:
        return None
    n = min(fp.logprobs.shape[0], q.logprobs.shape[0])
    p_log = fp.logprobs[:n].float()
    q_log = q.logprobs[:n].float()
    return float((p_log.exp() * (p_log - q_log)).sum(-1).mean())


def topk_agreement(fp: Dispatch, q: Dispatch) -> float:
    """Mean over tokens of |TopK_fp ∩ TopK_q| / k (k from the FP dispatch)."""
    k = fp.index.shape[1]
    hits = (fp.index[:, :, None] == q.index[:, None, :]).any(-1).sum(-1).float()
    return float((hits / k).mean())


def top1_agreement(fp: Dispatch, q: Dispatch) -> float:
    """Share of tokens whose highest-weight expert is the same."""
    fp1 = fp.index.gather(1, fp.weights.argmax(1, keepdim=True))
    q1 = q.index.gather(1, q.weights.argmax(1, keepdim=True))
    return float((fp1 == q1).float().mean())


def routing_kl(fp: Dispatch, q: Dispatch) -> float | None:
    """Mean per-token KL between the family's expert distributions (softmax, or normalized sigmoid
    scores) of the FP and quantized router logits."""
    if fp.logits is None or q.logits is None:
        return None
    rule = RoutingRule(top_k=fp.index.shape[1], score=getattr(fp, "score", "softmax"))
    p = routing_distribution(fp.logits, rule)
    r = routing_distribution(q.logits, rule)
    return float((p.exp() * (p - r)).sum(-1).mean())


def expert_load(d: Dispatch, num_experts: int) -> list[float]:
    """Fraction of (token, slot) assignments each expert received."""
    c = d.counts(num_experts).float()
    return (c / c.sum().clamp(min=1)).tolist()


def routing_report(fp: ProbeResult, q: ProbeResult, num_experts: dict[int, int]) -> dict:
    layers = sorted(fp.dispatch)
    topk = [topk_agreement(fp.dispatch[i], q.dispatch[i]) for i in layers]
    rkl = [routing_kl(fp.dispatch[i], q.dispatch[i]) for i in layers]
    return {
        "layers": layers,
        "topk_agreement": topk,
        "top1_agreement": [top1_agreement(fp.dispatch[i], q.dispatch[i]) for i in layers],
        "mean_topk_agreement": float(sum(topk) / len(topk)) if topk else None,
        "kl": rkl,
        "expert_load_fp": {str(i): expert_load(fp.dispatch[i], num_experts[i]) for i in layers},
        "expert_load_q": {str(i): expert_load(q.dispatch[i], num_experts[i]) for i in layers},
    }

