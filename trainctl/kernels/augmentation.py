"""Image augmentation: one affine resampling per image, with Keras's fill modes.

Images are [n, rows, cols, channels]. Each image has a 2×3 matrix mapping an output pixel
(r, c) to the input position it reads: src_r = m0·r + m1·c + m2, src_c = m3·r + m4·c + m5.
Positions outside the image follow the fill mode, per neighbour (as scipy's map_coordinates):
reflect (d c b a | a b c d | d c b a), wrap (a b c d | a b c d), nearest (a a | a b c d | d d),
constant (k k | a b c d | k k).
"""

import math

from trainctl.jit import njit

FILL_REFLECT, FILL_WRAP, FILL_NEAREST, FILL_CONSTANT = 0, 1, 2, 3
INTERP_BILINEAR, INTERP_NEAREST = 0, 1


@njit
def _index(i, size, fill):
    """The pixel read for integer position i along an axis of `size`, or -1 (constant fill)."""
    if 0 <= i < size:
        return i
    if fill == 3:  # constant
        return -1
    if fill == 2:  # nearest
        return 0 if i < 0 else size - 1
    if fill == 1:  # wrap
        return i % size
    period = 2 * size  # reflect, edge included
    j = i % period
    return j if j < size else period - 1 - j


@njit
def affine_images(x, matrices, interpolation, fill, fill_value, y):
    """y[b] = x[b] resampled through matrices[b] (6 numbers); x and y may not alias."""
    n, rows, cols, channels = x.shape
    for b in range(n):
        m0, m1, m2, m3, m4, m5 = matrices[b, 0], matrices[b, 1], matrices[b, 2], matrices[b, 3], matrices[b, 4], matrices[b, 5]
        for r in range(rows):
            for c in range(cols):
                sr = m0 * r + m1 * c + m2
                sc = m3 * r + m4 * c + m5
                if interpolation == 1:
                    ir = _index(int(math.floor(sr + 0.5)), rows, fill)
                    ic = _index(int(math.floor(sc + 0.5)), cols, fill)
                    for d in range(channels):
                        y[b, r, c, d] = x[b, ir, ic, d] if ir >= 0 and ic >= 0 else fill_value
                    continue
                r0 = int(math.floor(sr))
                c0 = int(math.floor(sc))
                fr = sr - r0
                fc = sc - c0
                ra, rb = _index(r0, rows, fill), _index(r0 + 1, rows, fill)
                ca, cb = _index(c0, cols, fill), _index(c0 + 1, cols, fill)
                for d in range(channels):
                    v00 = x[b, ra, ca, d] if ra >= 0 and ca >= 0 else fill_value
                    v01 = x[b, ra, cb, d] if ra >= 0 and cb >= 0 else fill_value
                    v10 = x[b, rb, ca, d] if rb >= 0 and ca >= 0 else fill_value
                    v11 = x[b, rb, cb, d] if rb >= 0 and cb >= 0 else fill_value
                    top = v00 + (v01 - v00) * fc
                    bottom = v10 + (v11 - v10) * fc
                    y[b, r, c, d] = top + (bottom - top) * fr
