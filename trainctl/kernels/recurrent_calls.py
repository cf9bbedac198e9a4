"""How the compiled loop calls a recurrent layer's time loop (kernels/recurrent_steps.py): the
default activation pair's specialisation linked into the loop, any other pair's through its
address, given at run time.

The time loops (kernels/recurrent.py, recurrent_lstm.py, recurrent_gru*.py) are compiled per
activation pair, with the codes as constants (recurrent_gates._specialised). Linking every
pair's into the sequence loop would compile the loop once per pair the process meets (104-111
CPU-s cold on this project's 2-core machine, paid again for each). Instead a layer's plan
carries the address of the pair's compiled time loop — the very overload the Python path
calls, compiled or loaded from the cache on its own (~7 CPU-s for an LSTM's pair, once) — and
the loop calls it through that pointer by numba's own calling convention (errors propagate as
from a direct call). So a layer with another pair runs the same instructions as its Python
path, the loop compiles once for every pair, and a model with the defaults calls them directly
as before (address 0): its loop compiles in the same time and runs at the same speed.
Measured against this (LSTM, 50 steps x 64 units, batch 32): calling the Python dispatcher from
the loop through numba.objmode cost ~4.3 us per call and 3-5 CPU-s more in every sequence
loop's compile; time loops with the codes as run-time arguments, linked in, ran a training
step ~30% slower, added 9-13 CPU-s per cell to every sequence loop's compile, and did not always
give the specialised loops' bits (typed for every code at once, `_dact` returns float64).

The cached loop holds no address (one is only valid in the process that took it): plans take
them per fit. The loop's arguments must have the types of the overload the address is taken
for: both come from SIGNATURES, which the loop checks when it compiles (a mismatch is a typing
error there, never a call with the wrong layout).
"""

from __future__ import annotations

import numpy as np
from numba import from_dtype, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.core.extending import intrinsic, overload

from trainctl.kernels.codes import HARD_SIGMOID, TANH
from trainctl.kernels.recurrent import _simple_rnn_backward_for, _simple_rnn_forward_for
from trainctl.kernels.recurrent_gates import _specialised
from trainctl.kernels.recurrent_gru import _gru_backward_for, _gru_forward_for
from trainctl.kernels.recurrent_gru_reset_after import (
    _gru_reset_after_backward_for,
    _gru_reset_after_forward_for,
)
from trainctl.kernels.recurrent_lstm import _lstm_backward_for, _lstm_forward_for

DEFAULT_ACTIVATION, DEFAULT_RECURRENT_ACTIVATION = TANH, HARD_SIGMOID  # TF.js's; linked into the loop

# Each time loop's arguments as the loop passes them: an int is a C-contiguous array of that
# many dimensions in the buffers' dtype, B a boolean (the Python path's arrays have the same
# types, so both paths share the overload).
B = "b"
SIGNATURES = {
    _simple_rnn_forward_for: (3, 2, 1, 2, 2, 3, 3, 2, B),
    _simple_rnn_backward_for: (3, 2, B, 2, 2, 2, 3, 3, 3, 1, 2, 2, B),
    _lstm_forward_for: (3, 2, 1, 2, 2, 3, 3, 3, 3, 3, 2, B),
    _lstm_backward_for: (3, 2, B, 2, 2, 2, 3, 3, 3, 3, 3, 1, 2, 2, 2, B),
    _gru_forward_for: (3, 2, 2, 1, 2, 2, 3, 3, 3, 3, 2, 2, B),
    _gru_backward_for: (3, 2, B, 2, 2, 2, 2, 3, 3, 3, 3, 1, 2, 2, 2, 2, 2, B),
    _gru_reset_after_forward_for: (3, 2, 1, 1, 2, 2, 3, 3, 3, 3, 2, B),
    _gru_reset_after_backward_for: (3, 2, B, 2, 2, 2, 3, 3, 3, 3, 3, 3, 1, 1, 2, 2, B),
}
FORWARD = frozenset({_simple_rnn_forward_for, _lstm_forward_for, _gru_forward_for, _gru_reset_after_forward_for})
GATED = frozenset(SIGNATURES) - {_simple_rnn_forward_for, _simple_rnn_backward_for}


def _scalar(dtype) -> types.Type:
    return dtype if isinstance(dtype, types.Type) else from_dtype(np.dtype(dtype))


def argument_types(make, dtype) -> tuple:
    """The numba types of `make`'s time loop's arguments as the loop passes them, for buffers
    of `dtype` (a numba or numpy dtype)."""
    return tuple(types.boolean if kind == B else types.Array(_scalar(dtype), kind, "C") for kind in SIGNATURES[make])


def _codes(make, activation: int, recurrent_activation: int, dtype) -> tuple[int, ...]:
    """The constants `make`'s time loop is specialised for: the activation (and the gates'),
    then, forward, whether float32 buffers take the fast forms (as Recurrent.allocate sets it)."""
    codes = (activation, recurrent_activation) if make in GATED else (activation,)
    if make in FORWARD:
        codes = (*codes, int(_scalar(dtype) == types.float32))
    return codes


def is_default(make, activation: int, recurrent_activation: int) -> bool:
    """Whether the pair is the one linked into the loop (SimpleRNN has no gates: its activation alone)."""
    if make not in GATED:
        return activation == DEFAULT_ACTIVATION
    return (activation, recurrent_activation) == (DEFAULT_ACTIVATION, DEFAULT_RECURRENT_ACTIVATION)


def kernel(make, activation: int, recurrent_activation: int, dtype):
    """`make`'s time loop (a dispatcher) for this pair and dtype, as the Python path specialises it."""
    return _specialised(make, *_codes(make, activation, recurrent_activation, dtype))


def address(make, activation: int, recurrent_activation: int, dtype) -> int:
    """Where the compiled loop calls `make`'s time loop for this pair: 0 for the defaults (linked
    in), else the entry point of the pair's overload for the loop's argument types, compiled or
    loaded from the cache now (as the Python path would on its first call). The overload is
    compiled under its argument types alone, the key the Python path's call compiles and caches it
    under, so the two share one compile."""
    if is_default(make, activation, recurrent_activation):
        return 0
    loop = kernel(make, activation, recurrent_activation, dtype)
    arguments = argument_types(make, dtype)
    loop.compile(arguments)
    result = loop.overloads[arguments]
    if result.signature.return_type != types.none:  # _call_at passes no return slot of another type
        raise AssertionError(f"{loop.py_func.__name__} returns {result.signature.return_type}, not None")
    entry = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
    if not entry:
        raise AssertionError(f"{loop.py_func.__name__}: no entry point in its compiled library")
    return entry


@intrinsic
def _call_at(typingctx, entry, arguments):
    """Call the compiled function at address `entry` with the tuple `arguments` spread, by
    numba's calling convention (as a first-class function's jit address is called), and
    propagate its error status to the caller."""
    signature = types.none(entry, arguments)

    def codegen(context, builder, sig, values):
        address, packed = values
        argument_types = tuple(arguments.types)
        spread = [builder.extract_value(packed, i) for i in range(len(argument_types))]
        function_type = context.call_conv.get_function_type(types.none, argument_types)
        callee = builder.inttoptr(address, function_type.as_pointer())
        status, _ = context.call_conv.call_function(builder, callee, types.none, argument_types, spread)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return signature, codegen


def time_loop(make):
    """A function for compiled callers, `run(entry, arguments)`: `make`'s time loop on the tuple
    `arguments`, specialised for the default pair and linked in when `entry` is 0, else the
    overload at `entry` (`address`)."""

    def run(entry, arguments):
        raise NotImplementedError("called from compiled code only")

    @overload(run)
    def _run(entry, arguments):
        dtype = arguments.types[0].dtype
        expected = argument_types(make, dtype)
        if tuple(arguments.types) != expected:
            raise TypingError(f"{make.__name__}: the loop passes {tuple(arguments.types)}, the address is taken "
                              f"for {expected} (recurrent_calls.SIGNATURES)")
        default = kernel(make, DEFAULT_ACTIVATION, DEFAULT_RECURRENT_ACTIVATION, dtype)

        def impl(entry, arguments):
            if entry == 0:
                default(*arguments)
            else:
                _call_at(entry, arguments)

        return impl

    return run
