"""Integer codes that select an activation, a loss or a metric inside the numba kernels.

Plain ints, no numba import: the registries in `trainctl.nn.activations` and
`trainctl.nn.losses` read them without loading the JIT. One kernel per role switches on
the code, so each role compiles once per dtype instead of once per function.
The numbers are internal (never saved in a run directory); only the ids are.
"""

# -- activations -----------------------------------------------------------------------
# Ordered roughly by how often they appear in models: the kernels test codes in this
# order, so the common ones cost the fewest comparisons.
LINEAR = 0
RELU = 1
SIGMOID = 2
TANH = 3
SOFTMAX = 4  # row-wise over the last axis
ELU = 5
SELU = 6
RELU6 = 7
HARD_SIGMOID = 8
SOFTPLUS = 9
SOFTSIGN = 10
LOG_SOFTMAX = 11  # row-wise over the last axis
GELU = 12  # TF.js `gelu`: x * Phi(x) with the exact erf
GELU_NEW = 13  # TF.js `gelu_new`: the tanh approximation
MISH = 14
SWISH = 15

ROWWISE_ACTIVATIONS = frozenset({SOFTMAX, LOG_SOFTMAX})

ACTIVATION_CODES = {
    "linear": LINEAR,
    "relu": RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "softmax": SOFTMAX,
    "elu": ELU,
    "selu": SELU,
    "relu6": RELU6,
    "hard_sigmoid": HARD_SIGMOID,
    "softplus": SOFTPLUS,
    "softsign": SOFTSIGN,
    "log_softmax": LOG_SOFTMAX,
    "gelu": GELU,
    "gelu_new": GELU_NEW,
    "mish": MISH,
    "swish": SWISH,
}

# -- losses ------------------------------------------------------------------------------
MEAN_SQUARED_ERROR = 0
MEAN_ABSOLUTE_ERROR = 1
MEAN_ABSOLUTE_PERCENTAGE_ERROR = 2
MEAN_SQUARED_LOGARITHMIC_ERROR = 3
SQUARED_HINGE = 4
HINGE = 5
CATEGORICAL_HINGE = 6
LOGCOSH = 7
CATEGORICAL_CROSSENTROPY = 8
SPARSE_CATEGORICAL_CROSSENTROPY = 9
BINARY_CROSSENTROPY = 10
KULLBACK_LEIBLER_DIVERGENCE = 11
POISSON = 12
COSINE_PROXIMITY = 13

LOSS_CODES = {
    "mean_squared_error": MEAN_SQUARED_ERROR,
    "mean_absolute_error": MEAN_ABSOLUTE_ERROR,
    "mean_absolute_percentage_error": MEAN_ABSOLUTE_PERCENTAGE_ERROR,
    "mean_squared_logarithmic_error": MEAN_SQUARED_LOGARITHMIC_ERROR,
    "squared_hinge": SQUARED_HINGE,
    "hinge": HINGE,
    "categorical_hinge": CATEGORICAL_HINGE,
    "logcosh": LOGCOSH,
    "categorical_crossentropy": CATEGORICAL_CROSSENTROPY,
    "sparse_categorical_crossentropy": SPARSE_CATEGORICAL_CROSSENTROPY,
    "binary_crossentropy": BINARY_CROSSENTROPY,
    "kullback_leibler_divergence": KULLBACK_LEIBLER_DIVERGENCE,
    "poisson": POISSON,
    "cosine_proximity": COSINE_PROXIMITY,
}

# -- metrics -----------------------------------------------------------------------------
# A metric that is a loss formula (evaluated in y_pred's dtype, as TF.js logs it) is
# LOSS_METRIC_OFFSET + its loss code: the metric kernel runs the loss's row function.
BINARY_ACCURACY = 0
CATEGORICAL_ACCURACY = 1
SPARSE_CATEGORICAL_ACCURACY = 2
R2_SCORE = 12
LOSS_METRIC_OFFSET = 100

METRIC_CODES = {
    "binary_accuracy": BINARY_ACCURACY,
    "categorical_accuracy": CATEGORICAL_ACCURACY,
    "sparse_categorical_accuracy": SPARSE_CATEGORICAL_ACCURACY,
    "r2_score": R2_SCORE,
    **{
        name: LOSS_METRIC_OFFSET + LOSS_CODES[name]
        for name in (
            "mean_squared_error",
            "mean_absolute_error",
            "mean_absolute_percentage_error",
            "cosine_proximity",
            "binary_crossentropy",
            "categorical_crossentropy",
            "sparse_categorical_crossentropy",
        )
    },
}
