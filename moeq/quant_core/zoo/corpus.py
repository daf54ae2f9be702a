"""The generated multi-domain corpus the testbeds are trained on (its held-out evaluation tasks are
defined in moeq.quant_core.evaluate.testbed_tasks).

Eight character-level "languages", each a one-line document `tag prompt answer`. The mixture is
deliberately imbalanced (two rare domains) so that some experts are rarely routed; every domain
has exact answers, so accuracy is measurable. Deterministic from a seed; the train, calibration and
held-out splits draw from disjoint seed streams.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Literal

Split = Literal["train", "calib", "heldout"]
_SPLIT_SALT = MappingProxyType({"train": 0x5EED, "calib": 0xCA1B, "heldout": 0x4E1D})

_NOUNS = (("fox", "foxes"), ("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("man", "men"),
          ("child", "children"), ("horse", "horses"), ("wolf", "wolves"))
_VERBS = (("sees", "see"), ("likes", "like"), ("finds", "find"), ("chases", "chase"), ("hears", "hear"))
_ADJS = ("red", "big", "small", "old", "happy", "quiet", "fast", "lazy")
_WORDS = ("sun", "moon", "tree", "stone", "river", "cloud", "apple", "house", "road", "star")


@dataclass(frozen=True)
class Example:
    prompt: str  # includes the tag, ends where the answer starts
    answer: str
    distractors: tuple[str, ...] = ()


def _add(r: random.Random) -> Example:
    a, b = r.randint(0, 49), r.randint(0, 49)
    wrong = {a + b + 1, a + b - 1, a + b + 10, abs(a - b), a + b - 10} - {a + b}
    return Example(f"add {a}+{b}=", str(a + b), tuple(str(w) for w in r.sample(sorted(wrong), 3)))


def _rev(r: random.Random) -> Example:
    s = "".join(r.choice("abcdefgh") for _ in range(r.randint(3, 5)))
    return Example(f"rev {s}>", s[::-1])


def _srt(r: random.Random) -> Example:
    d = [r.randint(0, 9) for _ in range(r.randint(3, 5))]
    return Example(f"srt {' '.join(map(str, d))}>", " ".join(map(str, sorted(d))))


def _kv(r: random.Random) -> Example:
    keys = r.sample("pqrstuvwxyz", 3)
    vals = r.sample(range(10), 3)
    q = r.randrange(3)
    body = " ".join(f"{k}={v}" for k, v in zip(keys, vals))
    return Example(f"kv {body} ?{keys[q]}>", str(vals[q]), tuple(str(v) for i, v in enumerate(vals) if i != q))


def _balanced(s: str) -> bool:
    stack, pairs = [], {")": "(", "]": "["}
    for c in s:
        if c in "([":
            stack.append(c)
        elif not stack or stack.pop() != pairs[c]:
            return False
    return not stack


def _par(r: random.Random) -> Example:
    if r.random() < 0.5:  # build a balanced string
        s = ""
        for _ in range(r.randint(1, 3)):
            o, c = r.choice(("()", "[]"))
            s = r.choice((o + s + c, s + o + c))
    else:
        s = "".join(r.choice("()[]") for _ in range(r.choice((2, 4, 6))))
    ok = _balanced(s)
    return Example(f"par {s}>", "yes" if ok else "no", ("no" if ok else "yes",))


def _cnt(r: random.Random) -> Example:
    c = r.choice("abc")
    s = "".join(r.choice("abc") for _ in range(r.randint(3, 7)))
    n = s.count(c)
    return Example(f"cnt {s} {c}>", str(n), tuple(str(x) for x in sorted({n + 1, max(0, n - 1), n + 2} - {n})))


def _eng(r: random.Random) -> Example:
    plural = r.random() < 0.5
    noun = r.choice(_NOUNS)[int(plural)]
    verb = r.choice(_VERBS)
    obj = r.choice(_NOUNS)[0]
    det = "the" if plural else r.choice(("the", "a"))
    subject = f"{det} {r.choice(_ADJS)} {noun}" if r.random() < 0.6 else f"{det} {noun}"
    right, wrong = (verb[1], verb[0]) if plural else (verb[0], verb[1])
    return Example(f"eng {subject} ", f"{right} a {obj} .", (f"{wrong} a {obj} .",))


def _cap(r: random.Random) -> Example:
    w = r.choice(_WORDS)
    return Example(f"cap {w}>", w.upper())


@dataclass(frozen=True)
class Domain:
    name: str
    weight: float
    make: Callable[[random.Random], Example]
    task: Literal["mc", "gen", "both"]
    max_new_tokens: int


DOMAINS_SPEC = (
    Domain("eng", 0.28, _eng, "mc", 12),
    Domain("add", 0.18, _add, "both", 4),
    Domain("kv", 0.14, _kv, "both", 2),
    Domain("rev", 0.12, _rev, "gen", 6),
    Domain("srt", 0.11, _srt, "gen", 10),
    Domain("par", 0.09, _par, "mc", 4),
    Domain("cnt", 0.05, _cnt, "gen", 2),   # rare
    Domain("cap", 0.03, _cap, "gen", 7),   # rare, uses its own (uppercase) characters
)
DOMAINS: tuple[str, ...] = tuple(d.name for d in DOMAINS_SPEC)
MIXTURE = MappingProxyType({d.name: d.weight for d in DOMAINS_SPEC})


def split_rng(seed: int, split: Split, stream: int = 0) -> random.Random:
    return random.Random((seed * 1_000_003 + _SPLIT_SALT[split]) * 7919 + stream)


def sample_domain(r: random.Random) -> Domain:
    return r.choices(DOMAINS_SPEC, weights=[d.weight for d in DOMAINS_SPEC])[0]


def documents(seed: int, n: int, split: Split) -> list[str]:
    """`n` one-line documents drawn from the domain mixture."""
    r = split_rng(seed, split)
    out = []
    for _ in range(n):
        ex = sample_domain(r).make(r)
        out.append(ex.prompt + ex.answer)
    return out


def domain_documents(seed: int, n: int, domain: str, split: Split = "heldout") -> list[str]:
    """`n` documents of one domain (for per-domain routing statistics)."""
    spec = next(d for d in DOMAINS_SPEC if d.name == domain)
    r = split_rng(seed, split, stream=DOMAINS.index(domain) + 1)
    return [(ex := spec.make(r)).prompt + ex.answer for _ in range(n)]


def domain_blocks(seed: int, n_blocks: int, block_chars: int, split: Split) -> str:
    """`n_blocks` blocks of exactly `block_chars` characters, each made of documents of a single
    domain (drawn with the mixture weights) — unlike `text_stream`, whose windows mix ~7 short
    documents of different domains. With the character tokenizer a block is one token window."""
    r = split_rng(seed, split, stream=len(DOMAINS) + 1)
    pools: dict[str, list[str]] = {}
    blocks = []
    for _ in range(n_blocks):
        domain = sample_domain(r).name
        text = ""
        while len(text) < block_chars:
            pool = pools.get(domain) or domain_documents(seed + len(blocks), 64, domain, split)
            text += pool.pop() + "\n"
            pools[domain] = pool
        blocks.append(text[:block_chars])
    return "".join(blocks)


def text_stream(seed: int, n_chars: int, split: Split) -> str:
    """Documents joined by newlines until at least `n_chars` characters."""
    r = split_rng(seed, split)
    parts, total = [], 0
    while total < n_chars:
        ex = sample_domain(r).make(r)
        doc = ex.prompt + ex.answer
        parts.append(doc)
        total += len(doc) + 1
    return "\n".join(parts)
