"""Exact integer factorisations of a multiplier's lookup table into int8 x int8 GEMM terms.

Any table L (R x C, integers) is written exactly as

    L[a, w] = sum_t s_t * U_t[a] * V_t[w]  +  alpha[a]  +  beta[w]

with every U_t, V_t in [-128, 127] (one int8 x int8 -> int32 tensor-core GEMM per term, scaled
by the integer s_t) and a row function alpha / column function beta (free: they become row sums
of the activations and per-output-channel constants). Summed over the K taps of a dot product,
the LUT GEMM is then ``sum_t s_t * (U_t(A) @ V_t(W)) + rowsum(alpha(A)) + colsum(beta(W))``,
bit-identical to the LUT because everything is integer arithmetic.

The search (``factorise``) starts from L = a*w + E (the exact product is one term), removes the
row and column functions from E, and tries several exact factorisations of the rest:

- **integer low rank** (``lattice-rows`` / ``lattice-cols``): a basis of the Z-lattice spanned by
  the rows (or columns) of E, in echelon form, built with extended-gcd row operations; every row
  of E is an integer combination of the basis rows, so E = X B exactly with rank(E) terms;
- **bit planes** (``bitplane-a`` / ``bitplane-w``): E is linear in the bits of one operand's
  table index (multipliers that drop or approximate partial products), E = sum_i bit_i(a) h_i(w).

Each candidate's integer terms (x, y) are then *compiled* to int8 digits: a common divisor of
each factor's differences becomes the term's scale, offsets become row/column functions, and a
factor wider than 8 bits is split into base-256 digits (one GEMM per digit pair). The candidate
with the fewest GEMMs wins; every result is verified by rebuilding the whole table in int64.

``truncated_svd`` is the explicitly *approximate* alternative (float factors, rounded result);
it reports its residual error and is only used on request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: default limit on the rank of the error part that the exact search attempts
MAX_RANK = 24
#: default limit on int8 GEMM terms of an exact factorisation worth using
MAX_TERMS = 32


@dataclass
class Term:
    """One int8 GEMM: ``scale * U[a] * V[w]`` (U, V int64 arrays with values in [-128, 127])."""

    u: np.ndarray
    v: np.ndarray
    scale: int = 1


@dataclass
class Factorisation:
    """L[a, w] = sum_t scale_t U_t[a] V_t[w] + alpha[a] + beta[w] (exact unless ``exact`` is False)."""

    terms: list[Term]
    alpha: np.ndarray
    beta: np.ndarray
    method: str
    rank: int                       # rank of the error part E (after removing row/col functions)
    a_funcs: list[np.ndarray] = field(default_factory=list)  # raw integer factors over a
    w_funcs: list[np.ndarray] = field(default_factory=list)  # raw integer factors over w
    exact: bool = True
    float_scales: np.ndarray | None = None   # approximate mode: per-term float scales
    residual: dict | None = None             # approximate mode: residual error of the table

    @property
    def n_gemms(self) -> int:
        return len(self.terms)

    @property
    def scales(self) -> list[int]:
        """Distinct integer term scales, in order of first appearance."""
        out: list[int] = []
        for t in self.terms:
            if t.scale not in out:
                out.append(t.scale)
        return out

    def reconstruct(self) -> np.ndarray:
        """The table this factorisation computes (int64; float64 in approximate mode)."""
        R, C = len(self.alpha), len(self.beta)
        if self.float_scales is not None:
            out = np.zeros((R, C), dtype=np.float64)
            for t, f in zip(self.terms, self.float_scales):
                out += f * np.outer(t.u, t.v).astype(np.float64)
            return out + self.alpha[:, None] + self.beta[None, :]
        out = np.zeros((R, C), dtype=np.int64)
        for t in self.terms:
            out += t.scale * np.outer(t.u, t.v)
        return out + self.alpha[:, None] + self.beta[None, :]

    def describe(self) -> str:
        kind = "exact" if self.exact else "approximate"
        return (f"{kind} {self.method}: error rank {self.rank}, {self.n_gemms} int8 GEMM term(s), "
                f"scales {self.scales}")


# --------------------------------------------------------------------------------------------
# integer linear algebra on Python ints (exact; only used on small-rank problems)

def _xgcd(a: int, b: int) -> tuple[int, int, int]:
    x0, x1, y0, y1 = 1, 0, 0, 1
    while b:
        q = a // b
        a, b = b, a - q * b
        x0, x1 = x1, x0 - q * x1
        y0, y1 = y1, y0 - q * y1
    return a, x0, y0


def _round_div(a: int, b: int) -> int:
    """round(a / b) for Python ints, b > 0."""
    return (2 * a + b) // (2 * b)


def lattice_factor(E: np.ndarray, max_rank: int = MAX_RANK) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer X (R x r), B (r x C) with E = X @ B, r = rank(E), or None if r > max_rank.

    B is a basis of the lattice spanned by E's rows, in echelon form (Hermite-like: positive
    pivots, entries above each pivot reduced); X holds each row's integer coordinates.
    """
    rows = [[int(v) for v in r] for r in np.asarray(E)]
    basis: list[tuple[int, list[int]]] = []   # (pivot column, row), sorted by pivot
    for x in rows:
        while True:
            c = next((j for j, v in enumerate(x) if v), None)
            if c is None:
                break
            i = next((i for i, (p, _) in enumerate(basis) if p == c), None)
            if i is None:
                if x[c] < 0:
                    x = [-v for v in x]
                basis.append((c, x))
                basis.sort(key=lambda pb: pb[0])
                break
            p, b = basis[i]
            g, s, t = _xgcd(b[c], x[c])
            nb = [s * u + t * v for u, v in zip(b, x)]
            bc, xc = b[c] // g, x[c] // g
            x = [bc * v - xc * u for u, v in zip(b, x)]
            if nb[c] < 0:
                nb = [-v for v in nb]
            basis[i] = (p, nb)
        if len(basis) > max_rank:
            return None
    # reduce the entries above each pivot (keeps the numbers small)
    for i in range(len(basis)):
        p, b = basis[i]
        for j in range(i):
            pj, bj = basis[j]
            q = _round_div(bj[p], b[p])
            if q:
                basis[j] = (pj, [u - q * v for u, v in zip(bj, b)])
    r = len(basis)
    X = np.zeros((len(rows), r), dtype=object)
    for ri, e in enumerate(rows):
        e = list(e)
        for bi, (p, b) in enumerate(basis):
            q, rem = divmod(e[p], b[p])
            if rem:
                raise ArithmeticError("row not in the lattice (internal error)")
            X[ri, bi] = q
            if q:
                e = [u - q * v for u, v in zip(e, b)]
        if any(e):
            raise ArithmeticError("row not reduced to zero (internal error)")
    B = np.array([b for _, b in basis], dtype=object).reshape(r, -1)
    return X, B


def _fits_int64(arr: np.ndarray) -> bool:
    if arr.size == 0:
        return True
    return max(abs(int(v)) for v in arr.reshape(-1)) < (1 << 40)


def _size_reduce(X: np.ndarray, B: np.ndarray, rounds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Greedy pairwise reduction of the basis rows (B_i -= q B_j, X_j += q X_i) while it
    shrinks the combined bit width of the factors. Keeps X @ B unchanged."""
    X = X.astype(np.int64)
    B = B.astype(np.int64)
    r = B.shape[0]

    def cost(x, b):
        return _bits(int(x.max()) - int(x.min())) + _bits(int(b.max()) - int(b.min()))

    for _ in range(rounds):
        changed = False
        for i in range(r):
            for j in range(r):
                if i == j:
                    continue
                best = cost(X[:, i], B[i]) + cost(X[:, j], B[j])
                best_q = 0
                nz = B[j] != 0
                if not nz.any():
                    continue
                cands = set()
                ratio = B[i][nz] / B[j][nz]
                for v in (np.median(ratio), ratio.mean()):
                    if np.isfinite(v):
                        cands.update({int(np.floor(v)), int(np.ceil(v))})
                cands.discard(0)
                for q in cands:
                    bi = B[i] - q * B[j]
                    xj = X[:, j] + q * X[:, i]
                    c = cost(X[:, i], bi) + cost(xj, B[j])
                    if c < best:
                        best, best_q = c, q
                if best_q:
                    B[i] = B[i] - best_q * B[j]
                    X[:, j] = X[:, j] + best_q * X[:, i]
                    changed = True
        if not changed:
            break
    return X, B


def _bits(width: int) -> int:
    return max(1, int(width).bit_length())


# --------------------------------------------------------------------------------------------
# compiling integer terms to int8 digits

def _digits(v: np.ndarray) -> tuple[list[tuple[np.ndarray, int]], int]:
    """v = offset + sum_d weight_d * digit_d with digits in [-128, 127]."""
    lo, hi = int(v.min()), int(v.max())
    if hi - lo <= 255:
        off = lo + 128
        return [(v - off, 1)], off
    rest = v - lo
    digits, weight, off = [], 1, lo
    while True:
        d = rest % 256
        digits.append((d - 128, weight))
        off += 128 * weight
        rest = rest // 256
        weight *= 256
        if not rest.any():
            break
    return digits, off


def _compile_term(x: np.ndarray, y: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> list[Term]:
    """Append int8 terms for the integer outer product x y^T; row/col parts go to alpha/beta."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    x0, y0 = int(x[0]), int(y[0])
    gx = math.gcd(*[int(v) for v in (x - x0)]) if len(x) > 1 else 0
    gy = math.gcd(*[int(v) for v in (y - y0)]) if len(y) > 1 else 0
    # x y^T = x0*y + y0*x - x0*y0 + gx*gy * xr yr^T
    alpha += y0 * x
    beta += x0 * y - x0 * y0
    if gx == 0 or gy == 0:
        return []
    xr = (x - x0) // gx
    yr = (y - y0) // gy
    g = gx * gy
    # move the common factor into a side that still fits one int8 digit
    def width(v):
        return int(v.max() - v.min())

    for f in (2, 3, 5, 7):
        while g % f == 0:
            wx, wy = width(xr), width(yr)
            if wx * f <= 255 and (wx <= wy or wy * f > 255):
                xr, g = xr * f, g // f
            elif wy * f <= 255:
                yr, g = yr * f, g // f
            else:
                break
    xd, ox = _digits(xr)
    yd, oy = _digits(yr)
    # xr yr^T = (ox + X')(oy + Y')^T = ox*yr + oy*xr - ox*oy + X' Y'^T
    alpha += g * oy * xr
    beta += g * (ox * yr - ox * oy)
    terms = []
    for dx, wx in xd:
        for dy, wy in yd:
            if dx.any() and dy.any():
                terms.append(Term(dx.astype(np.int64), dy.astype(np.int64), g * wx * wy))
    return terms


def compile_terms(raw: list[tuple[np.ndarray, np.ndarray]], alpha: np.ndarray, beta: np.ndarray,
                  method: str, rank: int) -> Factorisation:
    alpha = np.array(alpha, dtype=np.int64)
    beta = np.array(beta, dtype=np.int64)
    terms: list[Term] = []
    for x, y in raw:
        terms += _compile_term(x, y, alpha, beta)
    # fold the constant into beta, alpha relative to its first entry
    beta += alpha[0]
    alpha = alpha - alpha[0]
    terms.sort(key=lambda t: t.scale)
    return Factorisation(terms, alpha, beta, method, rank,
                         a_funcs=[np.asarray(x, dtype=np.int64) for x, _ in raw],
                         w_funcs=[np.asarray(y, dtype=np.int64) for _, y in raw])


# --------------------------------------------------------------------------------------------
# the search

def operand_values(bits: int, signed: bool) -> np.ndarray:
    lo = -(1 << (bits - 1)) if signed else 0
    return np.arange(lo, lo + (1 << bits), dtype=np.int64)


def _bitplane(E: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """E[i, :] - E[0, :] == sum_b bit_b(i) (E[2^b, :] - E[0, :]) for all i? -> terms (bits, rows)."""
    R = E.shape[0]
    nb = R.bit_length() - 1
    idx = np.arange(R)
    bits = ((idx[:, None] >> np.arange(nb)[None, :]) & 1).astype(np.int64)   # (R, nb)
    rows = np.stack([E[1 << b] - E[0] for b in range(nb)])                     # (nb, C)
    if not np.array_equal(E - E[0][None, :], bits @ rows):
        return None
    return [(bits[:, b], rows[b]) for b in range(nb) if rows[b].any()]


def factorise(table: np.ndarray, signed: bool, *, max_rank: int = MAX_RANK,
              exact_only: bool = False) -> Factorisation | None:
    """The cheapest exact factorisation found (see the module docstring).

    None when the error part has rank > ``max_rank`` and no bit-plane structure (no cheap exact
    factorisation exists: use the LUT kernel). ``exact_only``: the table is the exact product.
    """
    L = np.asarray(table).astype(np.int64)
    R, C = L.shape
    a_bits, w_bits = R.bit_length() - 1, C.bit_length() - 1
    av, wv = operand_values(a_bits, signed), operand_values(w_bits, signed)
    exact_term = (av, wv)
    E = L - np.outer(av, wv)
    a0 = int(np.flatnonzero(av == 0)[0])
    w0 = int(np.flatnonzero(wv == 0)[0])
    alpha = E[:, w0].copy()
    beta = E[a0, :] - E[a0, w0]
    E2 = E - alpha[:, None] - beta[None, :]
    cands: list[Factorisation] = []
    if exact_only or not E2.any():
        cands.append(compile_terms([exact_term], alpha, beta, "exact-product", 0))
    else:
        rank_est = int(np.linalg.matrix_rank(E2.astype(np.float64)))
        for name, src in (("bitplane-a", E2), ("bitplane-w", E2.T)):
            bp = _bitplane(src)
            if bp is not None:
                raw = bp if name == "bitplane-a" else [(y, x) for x, y in bp]
                cands.append(compile_terms([exact_term] + raw, alpha, beta, name, rank_est))
        if rank_est <= max_rank:
            for name, src in (("lattice-rows", E2), ("lattice-cols", E2.T)):
                res = lattice_factor(src, max_rank)
                if res is None:
                    continue
                X, B = res
                if not (_fits_int64(X) and _fits_int64(B)):
                    continue
                X, B = _size_reduce(X, B)
                raw = [(X[:, i], B[i]) for i in range(B.shape[0])]
                if name == "lattice-cols":
                    raw = [(y, x) for x, y in raw]
                cands.append(compile_terms([exact_term] + raw, alpha, beta, name, B.shape[0]))
        if not cands:
            return None
    good = []
    for f in cands:
        if np.array_equal(f.reconstruct(), L):
            good.append(f)
    if not good:
        raise ArithmeticError("no factorisation reproduced the table (internal error)")
    return min(good, key=lambda f: (f.n_gemms, len(f.scales)))


def truncated_svd(table: np.ndarray, signed: bool, rank: int) -> Factorisation:
    """Approximate: exact product + row/col functions + the ``rank`` largest singular terms of
    the rest, with int8-quantized factors and float scales. ``residual`` reports the error of
    the approximated table against the LUT (per product)."""
    L = np.asarray(table).astype(np.int64)
    R, C = L.shape
    a_bits, w_bits = R.bit_length() - 1, C.bit_length() - 1
    av, wv = operand_values(a_bits, signed), operand_values(w_bits, signed)
    E = L - np.outer(av, wv)
    a0 = int(np.flatnonzero(av == 0)[0])
    w0 = int(np.flatnonzero(wv == 0)[0])
    alpha = E[:, w0].copy()
    beta = E[a0, :] - E[a0, w0]
    E2 = (E - alpha[:, None] - beta[None, :]).astype(np.float64)
    base = compile_terms([(av, wv)], alpha, beta, f"truncated-svd-{rank}", rank)
    U, S, Vt = np.linalg.svd(E2)
    terms = list(base.terms)
    scales = [float(t.scale) for t in terms]
    for i in range(min(rank, int((S > 1e-9).sum()))):
        u, v = U[:, i], Vt[i]
        su = 127.0 / max(np.abs(u).max(), 1e-30)
        sv = 127.0 / max(np.abs(v).max(), 1e-30)
        qu = np.rint(u * su).astype(np.int64)
        qv = np.rint(v * sv).astype(np.int64)
        terms.append(Term(qu, qv, 1))
        scales.append(float(S[i] / (su * sv)))
    f = Factorisation(terms, base.alpha, base.beta, base.method, rank, exact=False,
                      float_scales=np.array(scales))
    approx = f.reconstruct()
    err = approx - L
    lut_err = np.abs(E).astype(np.float64)
    f.residual = {
        "rank": rank,
        "max_abs": float(np.abs(err).max()),
        "mean_abs": float(np.abs(err).mean()),
        "rounded_max_abs": float(np.abs(np.rint(approx) - L).max()),
        "lut_mean_abs_error": float(lut_err.mean()),
        "relative_to_lut_error": float(np.abs(err).mean() / lut_err.mean()) if lut_err.mean() else math.inf,
    }
    return f
