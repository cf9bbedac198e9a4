"""Activations: values against the plain-numpy TF.js references, gradients against central
finite differences (float64), the fused bias kernels, kinks, stability, the registry."""

import subprocess
import sys

import numpy as np
import pytest

from tests.reference.activations import REFERENCE
from trainctl.nn.activations import ACTIVATIONS, get_activation
from trainctl.kernels import codes
from trainctl.registry import UnknownIdError
from tests.reference.gradients import numeric_grad

NAMES = sorted(codes.ACTIVATION_CODES)
KINKS = (0.0, 6.0, -2.5, 2.5)  # relu/elu/selu at 0, relu6 at 0 and 6, hard_sigmoid at +-2.5


def away_from_kinks(rng, shape, spread=3.0):
    z = rng.normal(size=shape) * spread
    for kink in KINKS:
        near = np.abs(z - kink) < 0.05
        z[near] += 0.1
    return z


def forward(name, z):
    out = np.empty_like(z)
    ACTIVATIONS.get(name).forward(z, out)
    return out


def test_every_tfjs_activation_is_registered():
    assert set(ACTIVATIONS.names()) == set(REFERENCE)
    for name in NAMES:
        activation = ACTIVATIONS.get(name)
        assert activation.name == name
        assert activation.code == codes.ACTIVATION_CODES[name]
        assert activation.rowwise == (name in ("softmax", "log_softmax"))
    assert len({ACTIVATIONS.get(n).code for n in NAMES}) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_reference_nd(name, dtype):
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(4, 3, 5)) * 4).astype(dtype)
    out = forward(name, z)
    assert out.shape == z.shape and out.dtype == dtype
    expected = REFERENCE[name](z.astype(np.float64))
    rtol, atol = (2e-6, 2e-7) if dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", NAMES)
def test_forward_in_place(name):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(6, 7))
    expected = forward(name, z.copy())
    ACTIVATIONS.get(name).forward(z, z)
    np.testing.assert_array_equal(z, expected)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(name):
    rng = np.random.default_rng(3)
    z = away_from_kinks(rng, (3, 5))
    weights = rng.normal(size=z.shape)  # L = sum(weights * act(z)), so dL/dy = weights
    y = forward(name, z)
    dz = np.empty_like(z)
    ACTIVATIONS.get(name).backward(z, y, weights, dz)
    numeric = numeric_grad(lambda x: float(np.sum(weights * forward(name, x))), z.copy())
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_backward_with_bias_grad_matches_finite_differences(name):
    rng = np.random.default_rng(4)
    z0 = away_from_kinks(rng, (4, 6)) - 0.3  # pre-bias values
    bias = np.full(6, 0.3)
    weights = rng.normal(size=z0.shape)
    activation = ACTIVATIONS.get(name)

    def loss_of_bias(b):
        z = z0.copy()
        out = np.empty_like(z)
        activation.forward_with_bias(z, b, out)
        return float(np.sum(weights * out))

    z = z0.copy()
    y = np.empty_like(z)
    activation.forward_with_bias(z, bias, y)
    dz = np.empty_like(z)
    dbias = np.full(6, np.nan)  # must be overwritten, not accumulated into
    activation.backward_with_bias_grad(z, y, weights, dz, dbias)

    plain_dz = np.empty_like(z)
    activation.backward(z, y, weights, plain_dz)
    np.testing.assert_array_equal(dz, plain_dz)
    np.testing.assert_allclose(dbias, dz.sum(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dbias, numeric_grad(loss_of_bias, bias.copy()), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_with_bias_keeps_preactivation(name, dtype):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(2, 3, 4)).astype(dtype)
    bias = rng.normal(size=4).astype(dtype)
    expected_z = z + bias
    out = np.empty_like(z)
    ACTIVATIONS.get(name).forward_with_bias(z, bias, out)
    np.testing.assert_array_equal(z, expected_z)
    np.testing.assert_array_equal(out, forward(name, expected_z))


@pytest.mark.parametrize("name", NAMES)
def test_backward_nd_and_float32_agree_with_float64(name):
    rng = np.random.default_rng(6)
    z = away_from_kinks(rng, (4, 3, 5))
    dy = rng.normal(size=z.shape)
    activation = ACTIVATIONS.get(name)
    results = {}
    for dtype in (np.float32, np.float64):
        zz, dyy = z.astype(dtype), dy.astype(dtype)
        y = forward(name, zz)
        dz = np.empty_like(zz)
        dbias = np.empty(5, dtype)
        activation.backward_with_bias_grad(zz, y, dyy, dz, dbias)
        assert dz.shape == z.shape and dz.dtype == dtype
        results[dtype] = (dz, dbias)
    np.testing.assert_allclose(results[np.float32][0], results[np.float64][0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(results[np.float32][1], results[np.float64][1], rtol=2e-5, atol=2e-5)


KINK_GRADIENTS = [  # what tfjs-core's gradient functions give exactly at the kinks
    ("relu", 0.0, 0.0),  # step(x): 0 at 0
    ("relu6", 0.0, 0.0),
    ("relu6", 6.0, 1.0),  # lessEqual(x, 6)
    ("relu6", 6.5, 0.0),
    ("hard_sigmoid", 2.5, 0.2),  # clipByValue passes at its bounds
    ("hard_sigmoid", -2.5, 0.2),
    ("hard_sigmoid", 3.0, 0.0),
    ("elu", 0.0, 1.0),
    ("selu", 0.0, 1.7580993408473768599402175208123),  # greater(x, 0) is false at 0
    ("linear", 0.0, 1.0),
    ("softsign", 0.0, 1.0),
]


@pytest.mark.parametrize("name,x,expected", KINK_GRADIENTS)
def test_derivative_at_kinks_follows_tfjs(name, x, expected):
    z = np.array([[x]])
    dz = np.empty_like(z)
    ACTIVATIONS.get(name).backward(z, forward(name, z), np.ones_like(z), dz)
    assert dz[0, 0] == pytest.approx(expected, rel=1e-15)


def test_tfjs_constants_and_named_values():
    z = np.array([[-1.0, 0.0, 1.0, 10.0]])
    np.testing.assert_allclose(forward("selu", z)[0, 3], 10 * 1.0507009873554804934193349852946, rtol=1e-15)
    np.testing.assert_allclose(forward("hard_sigmoid", z)[0], [0.3, 0.5, 0.7, 1.0], rtol=1e-15)
    np.testing.assert_allclose(forward("relu6", z)[0], [0.0, 0.0, 1.0, 6.0])
    # gelu is the exact erf form in TF.js, gelu_new the tanh approximation: they differ
    assert forward("gelu", z)[0, 0] == pytest.approx(-0.15865525393145707, rel=1e-14)
    assert forward("gelu_new", z)[0, 0] == pytest.approx(-0.15880800939172324, rel=1e-14)


def test_softmax_is_stable_for_large_logits():
    z = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]], dtype=np.float32)
    y = forward("softmax", z)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[0], REFERENCE["softmax"](np.array([0.0, 1.0, 2.0])), rtol=1e-6)
    log_y = forward("log_softmax", z)
    assert np.all(np.isfinite(log_y))
    np.testing.assert_allclose(log_y[1], REFERENCE["log_softmax"](np.array([0.0, -1.0, -2.0])), rtol=1e-6)
    big = np.array([[-800.0, 0.0, 800.0]])
    for name in ("sigmoid", "softplus", "swish", "mish", "elu", "selu", "gelu", "softsign", "tanh"):
        assert np.all(np.isfinite(forward(name, big))), name
    np.testing.assert_allclose(forward("softplus", big)[0], [0.0, np.log(2.0), 800.0], rtol=1e-15)


def test_softmax_with_one_column_is_one():
    z = np.array([[3.0], [-7.0]])
    np.testing.assert_array_equal(forward("softmax", z), 1.0)
    np.testing.assert_array_equal(forward("log_softmax", z), 0.0)


def test_non_contiguous_output_is_refused():
    z = np.zeros((4, 6))
    out = np.zeros((6, 4)).T
    with pytest.raises(ValueError, match="C-contiguous"):
        ACTIVATIONS.get("relu").forward(z, out)


def test_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match="mixed dtypes"):
        ACTIVATIONS.get("relu").forward(np.zeros((2, 2)), np.zeros((2, 2), np.float32))


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("hardSigmoid", "hard_sigmoid"),
        ("logSoftmax", "log_softmax"),
        ("gelu_new", "gelu_new"),
        ("geluNew", "gelu_new"),
        ("relu6", "relu6"),
        ("silu", "swish"),
        ("softmax", "softmax"),
    ],
)
def test_tfjs_spellings_resolve(spelling, name):
    assert ACTIVATIONS.resolve(spelling) == name


def test_unknown_activation_suggests_the_closest():
    with pytest.raises(UnknownIdError, match="did you mean 'relu'"):
        ACTIVATIONS.get("relux")
    with pytest.raises(UnknownIdError, match="did you mean 'softmax'"):
        ACTIVATIONS.get("softmaks")


def test_none_means_linear():
    assert get_activation(None).name == "linear"


def test_importing_registries_does_not_import_numba():
    code = (
        "import sys; import trainctl.nn.activations, trainctl.nn.losses, trainctl.kernels.codes; "
        "assert 'numba' not in sys.modules, 'numba imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


TORCH_EQUIVALENTS = {  # hard_sigmoid is left out: torch's is x/6 + 1/2, TF.js's 0.2x + 1/2
    "elu": "elu",
    "selu": "selu",
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "softplus": "softplus",
    "softsign": "softsign",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "mish": "mish",
    "swish": "silu",
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_EQUIVALENTS))
def test_forward_and_backward_agree_with_torch(name):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    torch_fn = {
        "softmax": lambda x: functional.softmax(x, dim=-1),
        "log_softmax": lambda x: functional.log_softmax(x, dim=-1),
        "gelu_tanh": lambda x: functional.gelu(x, approximate="tanh"),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }.get(TORCH_EQUIVALENTS[name], getattr(functional, TORCH_EQUIVALENTS[name], None))
    rng = np.random.default_rng(7)
    z = away_from_kinks(rng, (5, 6))
    dy = rng.normal(size=z.shape)
    zt = torch.tensor(z, requires_grad=True)
    yt = torch_fn(zt)
    yt.backward(torch.tensor(dy))
    y = forward(name, z)
    dz = np.empty_like(z)
    ACTIVATIONS.get(name).backward(z, y, dy, dz)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-13)
