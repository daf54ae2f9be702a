"""Hadamard matrices and randomized orthogonal rotations (QuaRot-style).

Sizes 2^k use Sylvester's construction; m·2^k with a Paley matrix of order m (m = q+1 for a prime
q ≡ 3 mod 4, or 2(q+1) for a prime q ≡ 1 mod 4) use a Kronecker product. Other sizes fall back
to a random orthogonal matrix (QR of a Gaussian), which the caller is told about.
"""

from __future__ import annotations

import math

import torch


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % p for p in range(2, int(math.isqrt(q)) + 1))


def _paley(m: int) -> torch.Tensor | None:
    """A Hadamard matrix of order m by Paley's constructions, or None."""
    def jacobsthal(q: int) -> torch.Tensor:
        squares = {(x * x) % q for x in range(1, q)}
        chi = [0] + [1 if a in squares else -1 for a in range(1, q)]
        return torch.tensor([[chi[(j - i) % q] for j in range(q)] for i in range(q)], dtype=torch.float64)

    q = m - 1
    if _is_prime(q) and q % 4 == 3:  # Paley I
        Qm = jacobsthal(q)
        S = torch.zeros(m, m, dtype=torch.float64)
        S[0, 1:] = 1
        S[1:, 0] = -1
        S[1:, 1:] = Qm
        return S + torch.eye(m, dtype=torch.float64)
    if m % 2 == 0:
        q = m // 2 - 1
        if _is_prime(q) and q % 4 == 1:  # Paley II
            Qm = jacobsthal(q)
            C = torch.zeros(q + 1, q + 1, dtype=torch.float64)
            C[0, 1:] = 1
            C[1:, 0] = 1
            C[1:, 1:] = Qm
            A = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
            B = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
            I = torch.eye(q + 1, dtype=torch.float64)
            return torch.kron(C, A) + torch.kron(I, B)
    return None


def hadamard_matrix(n: int) -> torch.Tensor | None:
    """An unnormalized ±1 Hadamard matrix of order n (float64), or None if no construction applies."""
    k = 0
    m = n
    while m % 2 == 0 and m > 1:
        m //= 2
        k += 1
    sylvester = torch.ones(1, 1, dtype=torch.float64)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    base = None
    if m == 1:
        base = torch.ones(1, 1, dtype=torch.float64)
    else:
        # try to absorb factors of two into the Paley order (e.g. 12 = 12·1, 28 = 28·1, 20)
        for shift in range(0, k + 1):
            candidate = _paley(m * 2 ** shift)
            if candidate is not None:
                base, k = candidate, k - shift
                break
    if base is None:
        return None
    for _ in range(k):
        sylvester = torch.kron(sylvester, h2)
    return torch.kron(base, sylvester)


def random_hadamard(n: int, seed: int = 0) -> tuple[torch.Tensor, bool]:
    """Orthogonal Q = H·diag(±1)/√n (float64) and whether it is a true Hadamard rotation."""
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
    H = hadamard_matrix(n)
    if H is None:
        G = torch.randn(n, n, generator=gen, dtype=torch.float64)
        Q, R = torch.linalg.qr(G)
        return Q * torch.sign(torch.diagonal(R))[None, :], False
    return (H * signs[None, :]) / math.sqrt(n), True
