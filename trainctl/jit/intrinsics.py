"""Two LLVM intrinsics numba does not expose, for kernels to call: a cache prefetch, and the
x86 MXCSR read/write (the thread's SSE control and status register; jit/fpu.py)."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

_I8P = ir.IntType(8).as_pointer()
_I32 = ir.IntType(32)


@intrinsic
def prefetch(typingctx, array, row, col):
    """Hint the cache to load the line holding array[row, col] (a 2-D array of any layout);
    no effect on results, and no fault for any address (llvm.prefetch never traps)."""

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        indices = [context.cast(builder, value, ty, types.intp)
                   for value, ty in zip(args[1:], signature.args[1:])]
        pointer = cgutils.get_item_pointer2(context, builder, data=ary.data,
                                            shape=cgutils.unpack_tuple(builder, ary.shape, 2),
                                            strides=cgutils.unpack_tuple(builder, ary.strides, 2),
                                            layout=aryty.layout, inds=indices)
        fnty = ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32])
        function = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch")
        # read, high temporal locality, data cache
        builder.call(function, [builder.bitcast(pointer, _I8P), ir.Constant(_I32, 0),
                                ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None
    return types.void(array, row, col), codegen


def _mxcsr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [_I8P])
    function = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(function, [builder.bitcast(slot, _I8P)])


@intrinsic
def stmxcsr(typingctx):
    """The calling thread's MXCSR (x86-64 only)."""

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, _I32)
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.zext(builder.load(slot), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def ldmxcsr(typingctx, value):
    """Load `value` into the calling thread's MXCSR (x86-64 only)."""

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, _I32)
        builder.store(builder.trunc(args[0], _I32), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.int64), codegen
