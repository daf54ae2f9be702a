"""DuQuant's per-linear input transform as pure tensor math (docs/methods.md "DuQuant").

T(x) = B₂ · Pᵀ... written as a pipeline on the last dimension of x [..., d], split into d/b blocks:

1. x ← x · R₁ in every block (one b×b rotation shared by all blocks), R₁ built greedily: at each
   step find the entry of largest |x| (over tokens and blocks), take its in-block channel c, and
   multiply by an orthogonal matrix whose row c is the uniform vector 1/√b — the outlier's mass is
   spread evenly over the block. Keep the prefix of steps with the smallest peak.
2. zigzag permutation: channels sorted by max |x| are dealt to blocks 0,1,…,B−1,B−1,…,0,0,1,…
   so every block gets a similar share of large channels.
3. x ← x · R₂ per block, built greedily like R₁ on the permuted activations.

Every step is orthogonal, so a linear y = x Wᵀ is unchanged when its weight becomes T(W) (rows of W
transformed like tokens): T(x) T(W)ᵀ = x M Mᵀ Wᵀ = x Wᵀ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def block_for(dim: int, block_size: int) -> int:
    """The block used for an input of `dim` channels: the configured size, or the whole input when it
    is smaller. Raises ValueError when neither fits (validation turns it into a RecipeError)."""
    if dim <= block_size:
        return dim
    if dim % block_size:
        raise ValueError(f"block size {block_size} does not divide the input dimension {dim}")
    return block_size


def _householder_to_uniform(channel: int, b: int) -> tuple[torch.Tensor, float]:
    """(v, vᵀv) of the reflection I − 2vvᵀ/vᵀv that maps e_channel to the uniform vector 1/√b."""
    v = torch.full((b,), -1.0 / math.sqrt(b), dtype=torch.float64)
    v[channel] += 1.0
    return v, float(v.dot(v))


def uniform_fixing_rotation(b: int, gen: torch.Generator) -> torch.Tensor:
    """A random orthogonal b×b matrix G with u·G = u for the uniform vector u (seeded)."""
    eye = torch.eye(b, dtype=torch.float64)
    if b < 3:
        return eye
    u = torch.full((b, 1), 1.0 / math.sqrt(b), dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.cat([u, torch.randn(b, b - 1, dtype=torch.float64, generator=gen)], 1))
    comp = basis[:, 1:]
    q, r = torch.linalg.qr(torch.randn(b - 1, b - 1, dtype=torch.float64, generator=gen))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return eye + comp @ (q - torch.eye(b - 1, dtype=torch.float64)) @ comp.T


def spreading_rotation(channel: int, b: int, gen: torch.Generator | None = None,
                       fixing: torch.Tensor | None = None) -> torch.Tensor:
    """An orthogonal b×b matrix (float64) whose row `channel` is the uniform vector 1/√b: a Householder
    reflection mapping e_channel to u, followed (with `gen` or `fixing`) by a random orthogonal map
    that keeps u fixed, so repeated steps do not undo each other."""
    v, vv = _householder_to_uniform(channel, b)
    H = torch.eye(b, dtype=torch.float64)
    if vv > 1e-24:
        H = H - (2.0 / vv) * torch.outer(v, v)
    if fixing is None and gen is not None:
        fixing = uniform_fixing_rotation(b, gen)
    return H if fixing is None else H @ fixing


def greedy_rotation(x: torch.Tensor, b: int, steps: int, gen: torch.Generator | None = None,
                    patience: int = 32) -> tuple[torch.Tensor, list[float]]:
    """(R [b, b] float64, peak per prefix length) for activations x [T, d]; R minimizes the peak
    max |x·R| over the prefixes of the greedy sequence. Stops after `patience` steps without a new best.
    Each step is a reflection (rank-one update) times one random u-fixing rotation drawn from `gen`
    for the whole sequence; without `gen` the bare reflection tends to oscillate between two states."""
    xb = x.double().reshape(-1, b)
    R = torch.eye(b, dtype=torch.float64)
    G = uniform_fixing_rotation(b, gen) if gen is not None else None
    best_R, peaks = R.clone(), [float(xb.abs().max())]
    best, since = peaks[0], 0
    for _ in range(steps):
        c = int(xb.abs().argmax()) % b
        v, vv = _householder_to_uniform(c, b)
        if vv < 1e-24:
            break
        xb = xb - (2.0 / vv) * torch.outer(xb @ v, v)
        R = R - (2.0 / vv) * torch.outer(R @ v, v)
        if G is not None:
            xb = xb @ G
            R = R @ G
        peaks.append(float(xb.abs().max()))
        if peaks[-1] < best - 1e-12:
            best, best_R, since = peaks[-1], R.clone(), 0
        else:
            since += 1
            if since >= patience:
                break
    return best_R, peaks


def zigzag_permutation(channel_max: torch.Tensor, b: int) -> torch.Tensor:
    """perm [d]: new channel i*b+j is old channel perm[i*b+j]; large channels dealt out in zigzag order."""
    d = channel_max.numel()
    nb = d // b
    order = torch.argsort(channel_max.double(), descending=True, stable=True).tolist()
    blocks: list[list[int]] = [[] for _ in range(nb)]
    cur, up = 0, True
    for ch in order:
        blocks[cur].append(ch)
        if up:
            if cur == nb - 1:
                up = False
            else:
                cur += 1
        else:
            if cur == 0:
                up = True
            else:
                cur -= 1
    for blk in blocks:  # within a block, largest first
        blk.sort(key=lambda c: -float(channel_max[c]))
    return torch.tensor([c for blk in blocks for c in blk], dtype=torch.long)


@dataclass(frozen=True)
class BlockTransform:
    """x ↦ ((x·R₁ per block)[perm]) · R₂ per block, on the last dimension."""

    r1: torch.Tensor  # [b, b]
    perm: torch.Tensor  # [d] long
    r2: torch.Tensor  # [b, b]

    @property
    def block(self) -> int:
        return int(self.r1.shape[0])

    @property
    def dim(self) -> int:
        return int(self.perm.numel())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        b = self.block
        work = torch.float64 if dtype == torch.float64 else torch.float32
        y = x.to(work).reshape(-1, b) @ self.r1.to(device=x.device, dtype=work)
        y = y.reshape(-1, shape[-1])[:, self.perm.to(x.device)]
        y = y.reshape(-1, b) @ self.r2.to(device=x.device, dtype=work)
        return y.reshape(shape).to(dtype)

    def matrix(self) -> torch.Tensor:
        """The dense d×d matrix M with T(x) = x·M (float64)."""
        return self(torch.eye(self.dim, dtype=torch.float64))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"r1": self.r1.float().contiguous(), "perm": self.perm.contiguous(), "r2": self.r2.float().contiguous()}

    @staticmethod
    def from_tensors(t: dict[str, torch.Tensor]) -> "BlockTransform":
        return BlockTransform(t["r1"], t["perm"].long(), t["r2"])


def fit_transform(x: torch.Tensor, block_size: int, steps: int, seed: int | None = 0) -> BlockTransform:
    """DuQuant's rotation → zigzag permutation → rotation, fitted on activations x [T, d]. With a
    `seed` (the default), each greedy step also applies a seeded random rotation that keeps the uniform
    row; `seed=None` uses the bare reflection, which tends to oscillate between two states."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny ops: thread hand-offs cost far more than they save
    try:
        return _fit(x, block_size, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _fit(x: torch.Tensor, block_size: int, steps: int, seed: int | None) -> BlockTransform:
    x = x.reshape(-1, x.shape[-1]).double()
    b = block_for(x.shape[-1], block_size)
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    r1, _ = greedy_rotation(x, b, steps, gen)
    y = (x.reshape(-1, b) @ r1).reshape(x.shape)
    perm = zigzag_permutation(y.abs().amax(0), b)
    y = y[:, perm]
    r2, _ = greedy_rotation(y, b, steps, gen)
    return BlockTransform(r1, perm, r2)
