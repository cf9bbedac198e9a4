"""Training-time noise: spatial dropout, Gaussian noise and dropout, alpha dropout (TF.js formulas).

The random numbers are drawn by the layer (numpy Generators, resumable) into buffers and
passed in; these kernels only combine them. Every `mask` written here is dy/dx for backward.
"""

from trainctl.jit import njit


@njit
def spatial_dropout_forward(x, uniform, rate, channels_last, mask, y):
    """Dropout of whole channels: x, y [n, positions, channels] (channels_last) or
    [n, channels, positions]; uniform, mask [n, channels]. Keep where uniform >= rate,
    scaled by 1/(1 - rate), as TF.js dropout with noise shape [n, 1, channels]."""
    scale = 1.0 / (1.0 - rate)
    n, channels = mask.shape
    for i in range(n):
        for c in range(channels):
            mask[i, c] = scale if uniform[i, c] >= rate else 0.0
    apply_channel_mask(x, mask, channels_last, y)


@njit
def apply_channel_mask(x, mask, channels_last, y):
    """y = x times its channel's mask: x, y [n, positions, channels] (channels_last) or
    [n, channels, positions]; mask [n, channels]. Spatial dropout's forward and backward."""
    n, channels = mask.shape
    if channels_last:
        for i in range(n):
            for p in range(x.shape[1]):
                for c in range(channels):
                    y[i, p, c] = x[i, p, c] * mask[i, c]
    else:
        for i in range(n):
            for c in range(channels):
                m = mask[i, c]
                for p in range(x.shape[2]):
                    y[i, c, p] = x[i, c, p] * m


@njit
def spatial_dropout_backward(dy, mask, channels_last, dx):
    apply_channel_mask(dy, mask, channels_last, dx)


@njit
def gaussian_noise_forward(x, normal, stddev, y):
    """TF.js GaussianNoise: y = x + N(0, stddev); normal holds standard normal draws. 1-D arrays."""
    for i in range(x.shape[0]):
        y[i] = x[i] + normal[i] * stddev


@njit
def gaussian_dropout_forward(x, normal, stddev, mask, y):
    """TF.js GaussianDropout: y = x · N(1, stddev), stddev = √(rate/(1 − rate)). 1-D arrays."""
    for i in range(x.shape[0]):
        m = 1.0 + normal[i] * stddev
        mask[i] = m
        y[i] = x[i] * m


@njit
def alpha_dropout_forward(x, uniform, rate, a, b, alpha_p, mask, y):
    """TF.js AlphaDropout: kept = uniform >= rate; y = a·(x·kept + (kept − 1)·alpha_p) + b.
    mask = a·kept (dy/dx). 1-D arrays."""
    for i in range(x.shape[0]):
        kept = 1.0 if uniform[i] >= rate else 0.0
        mask[i] = a * kept
        y[i] = a * (x[i] * kept + (kept - 1.0) * alpha_p) + b


@njit
def multiply(dy, mask, dx):
    """dx = dy · mask (1-D)."""
    for i in range(dy.shape[0]):
        dx[i] = dy[i] * mask[i]


# The compiled training loop's dispatch over the noise layers (each layer calls its kernel by
# name; the loop by this code). The draws come from the layer's generator, drawn per chunk.
NOISE_GAUSSIAN, NOISE_GAUSSIAN_DROPOUT, NOISE_ALPHA_DROPOUT, NOISE_SPATIAL_DROPOUT = 0, 1, 2, 3


@njit
def noise_forward(op, x, uniform, normal, options, channels, channels_last, mask, y):
    """Noise layer `op`'s training forward over count samples: x, y flat; uniform / normal the
    step's draws (uniform [count * channels] for spatial dropout, whose mask is [count, channels]);
    options: stddev | stddev | (rate, a, b, alpha_p) | rate."""
    if op == NOISE_GAUSSIAN:
        gaussian_noise_forward(x, normal, options[0], y)
    elif op == NOISE_GAUSSIAN_DROPOUT:
        gaussian_dropout_forward(x, normal, options[0], mask, y)
    elif op == NOISE_ALPHA_DROPOUT:
        alpha_dropout_forward(x, uniform, options[0], options[1], options[2], options[3], mask, y)
    else:
        n = uniform.shape[0] // channels
        positions = x.shape[0] // (n * channels)
        shape = (n, positions, channels) if channels_last else (n, channels, positions)
        spatial_dropout_forward(x.reshape(shape), uniform.reshape(n, channels), options[0], channels_last,
                                mask[:n * channels].reshape(n, channels), y.reshape(shape))


@njit
def noise_backward(op, dy, channels, channels_last, mask, dx):
    """dx of noise layer `op` (additive Gaussian noise: dy itself)."""
    if op == NOISE_GAUSSIAN:
        dx[:] = dy
    elif op == NOISE_SPATIAL_DROPOUT:
        n = mask.shape[0] // channels
        positions = dy.shape[0] // (n * channels)
        shape = (n, positions, channels) if channels_last else (n, channels, positions)
        spatial_dropout_backward(dy.reshape(shape), mask.reshape(n, channels), channels_last, dx.reshape(shape))
    else:
        multiply(dy, mask, dx)
