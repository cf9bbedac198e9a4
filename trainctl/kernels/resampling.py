"""Up-sampling (nearest, bilinear as TF.js resizeBilinear without align_corners or half-pixel
centres) and embedding lookups.

Images are indexed [n, rows, cols, channels]; a channels_first caller passes transposed views.
Bilinear takes per-output-row tables (top, bottom, fraction) and the same per column.
"""

from trainctl.jit import njit


@njit
def upsample_nearest_forward(x, size_rows, size_cols, y):
    n, rows, cols, channels = x.shape
    for b in range(n):
        for r in range(rows * size_rows):
            source_r = r // size_rows
            for c in range(cols * size_cols):
                source_c = c // size_cols
                for d in range(channels):
                    y[b, r, c, d] = x[b, source_r, source_c, d]


@njit
def upsample_nearest_backward(dy, size_rows, size_cols, dx):
    n, rows, cols, channels = dx.shape
    for b in range(n):
        for r in range(rows):
            for c in range(cols):
                for d in range(channels):
                    total = 0.0
                    for i in range(size_rows):
                        for j in range(size_cols):
                            total += dy[b, r * size_rows + i, c * size_cols + j, d]
                    dx[b, r, c, d] = total


@njit
def upsample_bilinear_forward(x, top, bottom, row_frac, left, right, col_frac, y):
    """TF.js resizeBilinear: top + (bottom − top)·row_frac of the two column interpolations."""
    n = x.shape[0]
    channels = x.shape[3]
    for b in range(n):
        for r in range(top.shape[0]):
            t, u, fr = top[r], bottom[r], row_frac[r]
            for c in range(left.shape[0]):
                lo, hi, fc = left[c], right[c], col_frac[c]
                for d in range(channels):
                    top_value = x[b, t, lo, d] + (x[b, t, hi, d] - x[b, t, lo, d]) * fc
                    bottom_value = x[b, u, lo, d] + (x[b, u, hi, d] - x[b, u, lo, d]) * fc
                    y[b, r, c, d] = top_value + (bottom_value - top_value) * fr


@njit
def upsample_bilinear_backward(dy, top, bottom, row_frac, left, right, col_frac, dx):
    """The transpose of upsample_bilinear_forward (it is linear in x); dx is overwritten."""
    n, rows, cols, channels = dx.shape
    for b in range(n):
        for r in range(rows):
            for c in range(cols):
                for d in range(channels):
                    dx[b, r, c, d] = 0.0
        for r in range(top.shape[0]):
            t, u, fr = top[r], bottom[r], row_frac[r]
            for c in range(left.shape[0]):
                lo, hi, fc = left[c], right[c], col_frac[c]
                for d in range(channels):
                    g = dy[b, r, c, d]
                    g_top = g * (1.0 - fr)
                    g_bottom = g * fr
                    dx[b, t, lo, d] += g_top * (1.0 - fc)
                    dx[b, t, hi, d] += g_top * fc
                    dx[b, u, lo, d] += g_bottom * (1.0 - fc)
                    dx[b, u, hi, d] += g_bottom * fc


@njit
def embedding_forward(indices, table, out):
    """out[i] = table[indices[i]] for indices [m] (floats holding whole numbers), out [m, d].
    Returns -1, or the position of the first index that is not a row of the table (nothing
    after it is written)."""
    rows = table.shape[0]
    for i in range(indices.shape[0]):
        v = indices[i]
        k = int(v)
        if not (k == v and 0 <= k < rows):
            return i
        for j in range(table.shape[1]):
            out[i, j] = table[k, j]
    return -1


@njit
def embedding_backward(indices, dy, grad):
    """grad[k] = Σ dy[i] over the positions i whose index is k; grad [rows, d] is overwritten."""
    for k in range(grad.shape[0]):
        for j in range(grad.shape[1]):
            grad[k, j] = 0.0
    for i in range(indices.shape[0]):
        k = int(indices[i])
        for j in range(grad.shape[1]):
            grad[k, j] += dy[i, j]


@njit
def first_bad_index(indices, rows):
    """Position of the first value of indices [m] that is not a whole number in [0, rows), or -1."""
    for i in range(indices.shape[0]):
        v = indices[i]
        if not (v == int(v) and 0 <= v < rows):
            return i
    return -1


@njit
def copy_box(src, src_start, dst, dst_start, extent):
    """dst[:, dst_start + i] = src[:, src_start + i] for 0 <= i < extent over the three feature
    axes of [n, a, b, c] views: ZeroPadding/Cropping forward (x into y) and backward (dy into
    dx); what lies outside the box is never written (zero from allocation)."""
    for s in range(src.shape[0]):
        for i in range(extent[0]):
            for j in range(extent[1]):
                for k in range(extent[2]):
                    dst[s, dst_start[0] + i, dst_start[1] + j, dst_start[2] + k] = \
                        src[s, src_start[0] + i, src_start[1] + j, src_start[2] + k]
