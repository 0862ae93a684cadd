"""Small radix-2 FFT for numba kernels (real input via the half-length complex trick).

Why our own FFT: the per-frame work of log-mel/YIN is tiny (256-512 points) and numpy's
FFT cannot be called from nopython code; a whole frame loop (window, FFT, power, mel, log)
inside one jitted call avoids per-call Python overhead, which is what makes 20 ms streaming
chunks cheap.

``cfft_lanes`` runs G independent transforms stored as ``[m, G]``; every butterfly spans the
contiguous lane axis, which LLVM vectorises (numba does not vectorise a single small radix-2
FFT well). The log-mel kernels (``_melkern``) build a four-step FFT out of it; YIN uses it for
64 blocks at a time. Kernels are compiled without ``fastmath``: LLVM then never contracts
multiply-adds differently in vector and scalar code, so the single-frame and the multi-frame
log-mel paths give bit-identical results.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from ._common import register

JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@lru_cache(maxsize=16)
def rfft_tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tables for an ``n``-point real FFT (n a power of two >= 8).

    Returns (bitrev[int32, n/2], stage twiddles re/im [n/2-1] where the stage with half-size
    h uses entries h-1 .. 2h-2, post-processing twiddles re/im [n/2+1] = exp(-2j*pi*k/n)).
    Twiddles that are mathematically 0 or +-1 are stored exactly.
    """
    m = n // 2
    bits = m.bit_length() - 1
    if n < 8 or 1 << (bits + 1) != n:
        raise ValueError(f"FFT size must be a power of two >= 8, got {n}")
    idx = np.arange(m)
    rev = np.zeros(m, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    twr = np.empty(m - 1)
    twi = np.empty(m - 1)
    h = 1
    while h < m:
        k = np.arange(h)
        twr[h - 1 : 2 * h - 1] = np.cos(-np.pi * k / h)
        twi[h - 1 : 2 * h - 1] = np.sin(-np.pi * k / h)
        h *= 2
    k = np.arange(m + 1)
    pwr, pwi = np.cos(-2 * np.pi * k / n), np.sin(-2 * np.pi * k / n)
    for a in (twr, twi, pwr, pwi):
        a[np.abs(a) < 1e-12] = 0.0
        a[np.abs(np.abs(a) - 1.0) < 1e-12] = np.sign(a[np.abs(np.abs(a) - 1.0) < 1e-12])
    out = (rev.astype(np.int32), twr, twi, pwr, pwi)
    for a in out:
        a.flags.writeable = False
    return out


@register
@njit(**JIT)
def cfft_lanes(re, im, twr, twi):  # pragma: no cover - jitted
    """In-place radix-2 DIT FFT of bit-reversed input, G transforms at once (re/im [m, G])."""
    m, lanes = re.shape
    for j in range(0, m, 2):
        for g in range(lanes):
            ar = re[j, g]
            ai = im[j, g]
            br = re[j + 1, g]
            bi = im[j + 1, g]
            re[j, g] = ar + br
            im[j, g] = ai + bi
            re[j + 1, g] = ar - br
            im[j + 1, g] = ai - bi
    h = 2
    while h < m:
        for j in range(0, m, 2 * h):
            for k in range(h):
                wr = twr[h - 1 + k]
                wi = twi[h - 1 + k]
                a = j + k
                b = a + h
                for g in range(lanes):
                    tr = re[b, g] * wr - im[b, g] * wi
                    ti = re[b, g] * wi + im[b, g] * wr
                    ar = re[a, g]
                    ai = im[a, g]
                    re[b, g] = ar - tr
                    im[b, g] = ai - ti
                    re[a, g] = ar + tr
                    im[a, g] = ai + ti
        h *= 2


@register
@njit(**JIT)
def rfft_power_lanes(re, im, pwr, pwi, p):  # pragma: no cover - jitted
    """Power spectrum ``p[0..m, G]`` of real signals packed even/odd into re/im ``[m, G]``."""
    m, lanes = re.shape
    half = re.dtype.type(0.5)
    for g in range(lanes):
        a = re[0, g]
        b = im[0, g]
        p[0, g] = (a + b) * (a + b)
        p[m, g] = (a - b) * (a - b)
    for k in range(1, m):
        k2 = m - k
        wr = pwr[k]
        wi = pwi[k]
        for g in range(lanes):
            a = re[k, g]
            b = im[k, g]
            c = re[k2, g]
            d = im[k2, g]
            fer = half * (a + c)
            fei = half * (b - d)
            foe = half * (b + d)
            foi = half * (c - a)
            xr = fer + wr * foe - wi * foi
            xi = fei + wr * foi + wi * foe
            p[k, g] = xr * xr + xi * xi


@register
@njit(**JIT)
def rfft_power_1(re, im, pwr, pwi, p):  # pragma: no cover - jitted
    """Single-transform version of :func:`rfft_power_lanes` (same arithmetic)."""
    m = re.size
    half = re.dtype.type(0.5)
    a = re[0]
    b = im[0]
    p[0] = (a + b) * (a + b)
    p[m] = (a - b) * (a - b)
    for k in range(1, m):
        k2 = m - k
        wr = pwr[k]
        wi = pwi[k]
        a = re[k]
        b = im[k]
        c = re[k2]
        d = im[k2]
        fer = half * (a + c)
        fei = half * (b - d)
        foe = half * (b + d)
        foi = half * (c - a)
        xr = fer + wr * foe - wi * foi
        xi = fei + wr * foi + wi * foe
        p[k] = xr * xr + xi * xi


@register
@njit(**JIT)
def rfft_spec_lanes(re, im, pwr, pwi, xr, xi):  # pragma: no cover - jitted
    """Complex spectrum ``X[0..m]`` (xr/xi ``[m+1, G]``) of real signals packed into re/im."""
    m, lanes = re.shape
    half = re.dtype.type(0.5)
    for k in range(m + 1):
        k1 = k if k < m else 0
        k2 = m - k if k > 0 else 0
        wr = pwr[k]
        wi = pwi[k]
        for g in range(lanes):
            a = re[k1, g]
            b = im[k1, g]
            c = re[k2, g]
            d = im[k2, g]
            fer = half * (a + c)
            fei = half * (b - d)
            foe = half * (b + d)
            foi = half * (c - a)
            xr[k, g] = fer + wr * foe - wi * foi
            xi[k, g] = fei + wr * foi + wi * foe


@register
@njit(**JIT)
def irfft_lanes(xr, xi, rev, twr, twi, pwr, pwi, re, im, zr, zi):  # pragma: no cover - jitted
    """Inverse of :func:`rfft_spec_lanes`: real signals of length 2m from ``X[0..m]``.

    Output in re/im ``[m, G]`` as x[2n] = re[n], x[2n+1] = im[n]. zr/zi are scratch.
    Uses IFFT(Z) = conj(FFT(conj(Z))) / m on the half-length packed spectrum.
    """
    m, lanes = re.shape
    half = re.dtype.type(0.5)
    for k in range(m):
        k2 = m - k
        wr = pwr[k]
        wi = -pwi[k]  # conj(W^k) = exp(+2j pi k / n)
        for g in range(lanes):
            a = xr[k, g]
            b = xi[k, g]
            c = xr[k2, g]
            d = -xi[k2, g]
            fer = half * (a + c)
            fei = half * (b + d)
            dr = half * (a - c)
            di = half * (b - d)
            for_ = dr * wr - di * wi
            foi = dr * wi + di * wr
            zr[k, g] = fer - foi  # Z = Fe + 1j * Fo
            zi[k, g] = fei + for_
    for n in range(m):
        src = rev[n]
        for g in range(lanes):
            re[n, g] = zr[src, g]
            im[n, g] = -zi[src, g]
    cfft_lanes(re, im, twr, twi)
    scale = re.dtype.type(1.0) / m
    for n in range(m):
        for g in range(lanes):
            re[n, g] = re[n, g] * scale
            im[n, g] = -im[n, g] * scale
