"""Log-mel kernels shared by the batch and the streaming path (one code path, so equal).

Per frame: window, pack the real frame as a half-length complex signal, FFT by the four-step
method (M = R x 16: R-point FFTs vectorised over 16 columns, twiddle, transpose, 16-point FFTs
vectorised over R rows; every butterfly is SIMD, unlike a plain radix-2 FFT of one frame),
untangle to the power spectrum, sparse mel sums, log. Batch and stream run this same per-frame
function, so ``FeatureStream`` output is bit-identical to ``log_mel``.

All tables travel in two packed arrays (fewer arguments = cheaper numba dispatch, which matters
for 10-20 ms pushes): ``ftab`` (float32) and ``itab`` (int32), built by :func:`pack_tables`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._common import MAX_ABS, register
from ._fft import JIT, cfft_lanes, rfft_power_1, rfft_power_lanes, rfft_tables

COLS = 16  # four-step column count (SIMD lanes of the first pass)
_HDR = 6  # itab header: n_fft, rows, n_mels, width, hop, reserved


def pack_tables(
    n_fft: int, hop: int, window: np.ndarray, fb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pack window, FFT twiddles and sparse mel weights for :func:`logmel_frames`."""
    m = n_fft // 2
    rows = m // COLS
    rev_r, t1r, t1i, _, _ = rfft_tables(2 * rows)
    rev_c, t3r, t3i, _, _ = rfft_tables(2 * COLS)
    _, _, _, pwr, pwi = rfft_tables(n_fft)
    k1 = np.arange(rows)[:, None]
    n2 = np.arange(COLS)[None, :]
    ang = -2.0 * np.pi * k1 * n2 / m
    w2r, w2i = np.cos(ang).ravel(), np.sin(ang).ravel()
    n_mels = fb.shape[0]
    nz = [np.flatnonzero(row) for row in fb]
    mlo = np.array([z[0] if z.size else 0 for z in nz], dtype=np.int32)
    mhi = np.array([z[-1] + 1 if z.size else 0 for z in nz], dtype=np.int32)
    width = max(1, int((mhi - mlo).max()))
    mw = np.zeros((n_mels, width))
    for b in range(n_mels):
        mw[b, : mhi[b] - mlo[b]] = fb[b, mlo[b] : mhi[b]]
    ftab = np.concatenate([window, t1r, t1i, t3r, t3i, w2r, w2i, pwr, pwi, mw.ravel()])
    hdr = np.array([n_fft, rows, n_mels, width, hop, 0])
    itab = np.concatenate([hdr, rev_r, rev_c, mlo, mhi])
    return ftab.astype(np.float32), itab.astype(np.int32)


@register
@njit(**JIT)
def _unpack(ftab, itab):  # pragma: no cover - jitted
    """Views of the packed tables (layout written by :func:`pack_tables`)."""
    n_fft = itab[0]
    rows = np.int64(itab[1])
    n_mels = itab[2]
    width = itab[3]
    m = n_fft // 2
    o = 0
    win = ftab[o : o + n_fft]
    o += n_fft
    t1r = ftab[o : o + rows - 1]
    o += rows - 1
    t1i = ftab[o : o + rows - 1]
    o += rows - 1
    t3r = ftab[o : o + COLS - 1]
    o += COLS - 1
    t3i = ftab[o : o + COLS - 1]
    o += COLS - 1
    w2r = ftab[o : o + m]
    o += m
    w2i = ftab[o : o + m]
    o += m
    pwr = ftab[o : o + m + 1]
    o += m + 1
    pwi = ftab[o : o + m + 1]
    o += m + 1
    mw = ftab[o : o + n_mels * width]
    i = _HDR
    rev_r = itab[i : i + rows]
    i += rows
    rev_c = itab[i : i + COLS]
    i += COLS
    mlo = itab[i : i + n_mels]
    i += n_mels
    mhi = itab[i : i + n_mels]
    return win, t1r, t1i, t3r, t3i, w2r, w2i, pwr, pwi, mw, rev_r, rev_c, mlo, mhi


@register
@njit(**JIT)
def logmel_frames(xp, start, n_frames, ftab, itab, out, row0, scratch):  # pragma: no cover
    """Log-mel of frames ``start + f*hop`` (f < n_frames) of ``xp`` into ``out[row0 + f]``.

    One frame at a time (for the 1-2 frames of a streaming push); see :func:`logmel_lanes`.
    ``scratch`` (float32, >= ``scratch_size(n_fft)``) is caller-provided: allocating the five
    work arrays on every 20 ms push would cost about as much as one frame's mel sums.
    """
    n_fft = itab[0]
    rows = np.int64(itab[1])
    n_mels = itab[2]
    width = itab[3]
    hop = itab[4]
    m = n_fft // 2
    win, t1r, t1i, t3r, t3i, w2r, w2i, pwr, pwi, mw, rev_r, rev_c, mlo, mhi = _unpack(ftab, itab)
    ar = scratch[0:m].reshape((rows, COLS))
    ai = scratch[m : 2 * m].reshape((rows, COLS))
    br = scratch[2 * m : 3 * m].reshape((COLS, rows))
    bi = scratch[3 * m : 4 * m].reshape((COLS, rows))
    p = scratch[4 * m : 5 * m + 1]
    floor = np.float32(1e-10)
    for f in range(n_frames):
        s = start + f * hop
        # z[n] = x[2n] + 1j x[2n+1] (windowed) laid out as A[r, c] = z[COLS*rev_r[r] + c].
        for r in range(rows):
            base = 2 * COLS * rev_r[r]
            for c in range(COLS):
                j = base + 2 * c
                ar[r, c] = xp[s + j] * win[j]
                ai[r, c] = xp[s + j + 1] * win[j + 1]
        cfft_lanes(ar, ai, t1r, t1i)  # rows-point FFTs down the columns
        for k1 in range(rows):  # twiddle W_m^(k1*n2), transpose with bit-reversed rows
            for n2 in range(COLS):
                wr = w2r[k1 * COLS + n2]
                wi = w2i[k1 * COLS + n2]
                yr = ar[k1, n2] * wr - ai[k1, n2] * wi
                yi = ar[k1, n2] * wi + ai[k1, n2] * wr
                br[rev_c[n2], k1] = yr
                bi[rev_c[n2], k1] = yi
        cfft_lanes(br, bi, t3r, t3i)  # 16-point FFTs: B[k2, k1] = Z[k1 + rows*k2]
        rfft_power_1(scratch[2 * m : 3 * m], scratch[3 * m : 4 * m], pwr, pwi, p)  # = br, bi flat
        for b in range(n_mels):
            # Four interleaved partial sums break the add-latency chain (no fastmath).
            lo = mlo[b]
            hi = mhi[b]
            wb = b * width - lo
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            k = lo
            while k + 3 < hi:
                a0 += mw[wb + k] * p[k]
                a1 += mw[wb + k + 1] * p[k + 1]
                a2 += mw[wb + k + 2] * p[k + 2]
                a3 += mw[wb + k + 3] * p[k + 3]
                k += 4
            if k < hi:
                a0 += mw[wb + k] * p[k]
            if k + 1 < hi:
                a1 += mw[wb + k + 1] * p[k + 1]
            if k + 2 < hi:
                a2 += mw[wb + k + 2] * p[k + 2]
            out[row0 + f, b] = math.log((a0 + a1) + (a2 + a3) + floor)


LANES = 64  # frames per pass in logmel_lanes


@register
@njit(**JIT)
def logmel_lanes(xp, start, n_frames, ftab, itab, out, row0):  # pragma: no cover - jitted
    """:func:`logmel_frames` for many frames: 64 frames per pass on a trailing lane axis.

    Same floating-point operations in the same order per frame as :func:`logmel_frames`
    (bit-identical results), but every butterfly now spans COLS x 64 or rows x 64 contiguous
    values, which vectorises far better. Unused lanes of the last pass repeat the last frame.
    """
    n_fft = itab[0]
    rows = np.int64(itab[1])
    n_mels = itab[2]
    width = itab[3]
    hop = itab[4]
    m = n_fft // 2
    win, t1r, t1i, t3r, t3i, w2r, w2i, pwr, pwi, mw, rev_r, rev_c, mlo, mhi = _unpack(ftab, itab)
    g_n = LANES
    ar = np.empty((rows, COLS * g_n), dtype=np.float32)
    ai = np.empty((rows, COLS * g_n), dtype=np.float32)
    br = np.empty((COLS, rows * g_n), dtype=np.float32)
    bi = np.empty((COLS, rows * g_n), dtype=np.float32)
    p = np.empty((m + 1, g_n), dtype=np.float32)
    acc = np.empty((4, g_n), dtype=np.float32)
    floor = np.float32(1e-10)
    for f0 in range(0, n_frames, g_n):
        nl = min(g_n, n_frames - f0)
        for r in range(rows):
            base = 2 * COLS * rev_r[r]
            for c in range(COLS):
                j = base + 2 * c
                w0 = win[j]
                w1 = win[j + 1]
                for g in range(g_n):
                    s = start + (f0 + min(g, nl - 1)) * hop + j
                    ar[r, c * g_n + g] = xp[s] * w0
                    ai[r, c * g_n + g] = xp[s + 1] * w1
        cfft_lanes(ar, ai, t1r, t1i)
        for k1 in range(rows):
            for n2 in range(COLS):
                wr = w2r[k1 * COLS + n2]
                wi = w2i[k1 * COLS + n2]
                dst = rev_c[n2]
                for g in range(g_n):
                    xr = ar[k1, n2 * g_n + g]
                    xi = ai[k1, n2 * g_n + g]
                    br[dst, k1 * g_n + g] = xr * wr - xi * wi
                    bi[dst, k1 * g_n + g] = xr * wi + xi * wr
        cfft_lanes(br, bi, t3r, t3i)
        rfft_power_lanes(br.reshape((m, g_n)), bi.reshape((m, g_n)), pwr, pwi, p)
        for b in range(n_mels):
            lo = mlo[b]
            wb = b * width - lo
            for q in range(4):
                for g in range(g_n):
                    acc[q, g] = 0.0
            for k in range(lo, mhi[b]):
                w = mw[wb + k]
                q = (k - lo) & 3
                for g in range(g_n):
                    acc[q, g] += w * p[k, g]
            for g in range(nl):
                tot = (acc[0, g] + acc[1, g]) + (acc[2, g] + acc[3, g])
                out[row0 + f0 + g, b] = math.log(tot + floor)


def scratch_size(n_fft: int) -> int:
    """float32 scratch needed by :func:`logmel_frames`."""
    return 5 * (n_fft // 2) + 1


# FeatureStream state vector (float64; counts are exact integers).
S_BUF, S_SEEN, S_PREV, S_COEF, S_ERR, S_OUT = range(6)


@register
@njit(**JIT)
def stream_step(buf, state, chunk, ftab, itab):  # pragma: no cover - jitted
    """Append ``chunk`` to the stream buffer (with pre-emphasis) and emit every complete frame.

    ``buf`` = audio buffer followed by ``scratch_size(n_fft)`` floats of kernel scratch.
    A chunk with a non-finite sample or one above ``MAX_ABS`` sets ``state[S_ERR]`` and
    changes nothing else. Any chunk length works:
    the buffer is drained frame by frame while the chunk is copied in.
    """
    n_mels = itab[2]
    for i in range(chunk.size):
        v = chunk[i]
        if not abs(v) <= MAX_ABS:  # NaN, inf or absurd amplitude
            state[S_ERR] = 1.0
            return np.empty((0, n_mels), dtype=np.float32)
    n_fft = itab[0]
    hop = itab[4]
    n = int(state[S_BUF])
    total = n + chunk.size
    k_all = (total - n_fft) // hop + 1 if total >= n_fft else 0
    out = np.empty((k_all, n_mels), dtype=np.float32)
    prev = np.float32(state[S_PREV])
    c = np.float32(state[S_COEF])
    row = 0
    i = 0
    n_scr = 5 * (n_fft // 2) + 1
    cap = buf.size - n_scr
    scratch = buf[cap:]
    while i < chunk.size:
        take = min(cap - n, chunk.size - i)
        for j in range(take):
            v = np.float32(chunk[i + j])
            buf[n + j] = v - c * prev if c != 0.0 else v
            prev = v
        n += take
        i += take
        k = (n - n_fft) // hop + 1 if n >= n_fft else 0
        if k > 0:
            if k >= 16:
                logmel_lanes(buf, 0, k, ftab, itab, out, row)
            else:
                logmel_frames(buf, 0, k, ftab, itab, out, row, scratch)
            row += k
            used = k * hop
            for j in range(n - used):  # keep the unfinished tail (< n_fft samples)
                buf[j] = buf[j + used]
            n -= used
    state[S_BUF] = n
    state[S_SEEN] += chunk.size
    state[S_PREV] = prev
    state[S_OUT] += row
    return out
