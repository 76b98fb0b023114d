"""SIMD registers in numba: the vector type and intrinsics the GEMM micro-kernels are written in.

    acc = _vzero(c)                      # a register of c's dtype, zeros
    acc = _vfma(acc, x, _vload(p, i))    # acc + x * p[i:i + lanes], x a scalar broadcast
    _vstore(c, o, acc, n)                # c[o:o + n] = the first n lanes (a masked store)

`Vec` is an LLVM vector value, which LLVM keeps in a register; the
intrinsics index an array's data directly (flat element offsets, no bounds
check and no negative-index wraparound), so the caller owns every offset.
Plain numba loops over a tile did not do: LLVM kept the accumulators in
memory, or scalar, and ran at 3-6 GFLOP/s where these run at ~110.
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: bytes of one SIMD register: AVX-512's where the host has it, else AVX2's
WIDTH = 64 if "+avx512f" in llvm.get_host_cpu_features().flatten().split(",") else 32
_I32 = ir.IntType(32)


class Vec(types.Type):
    """A SIMD register's worth of `dtype` (WIDTH bytes)."""

    def __init__(self, dtype):
        self.dtype, self.lanes = dtype, WIDTH * 8 // dtype.bitwidth
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = ir.FloatType() if fe_type.dtype == types.float32 else ir.DoubleType()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _at(context, builder, aty, a, i):
    """Pointer to flat element i of an array's data."""
    return builder.gep(context.make_array(aty)(context, builder, a).data, [i])


def _splat(builder, x, vty):
    """x in every lane of a vector of type vty."""
    one = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, vty.count), [0] * vty.count))


def _first(builder, n, count):
    """A mask of the first n of `count` lanes."""
    lanes = ir.Constant(ir.VectorType(_I32, count), list(range(count)))
    return builder.icmp_signed("<", lanes, _splat(builder, builder.trunc(n, _I32), lanes.type))


def _llvm(builder, name, vty, ret, args):
    """A call of an LLVM intrinsic overloaded on vector type vty (`llvm.fma.v16f32`, ...)."""
    suffix = f"v{vty.count}{'f32' if vty.element == ir.FloatType() else 'f64'}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, [a.type for a in args]),
                                        name.replace("VEC", suffix))
    return builder.call(fn, args)


@intrinsic
def _lanes(typingctx, a):
    """Elements of a's dtype in one register (a constant); a an array or a pointer."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, Vec(a.dtype).lanes)
    return types.intp(a), codegen


@intrinsic
def _vzero(typingctx, a):
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)
    return vt(a), codegen


@intrinsic
def _vload(typingctx, a, i, n):
    """a[i:i + n] in the first n lanes, zeros after (n >= lanes: a plain load; else masked,
    so that nothing past a[i + n - 1] is touched)."""
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr = builder.bitcast(_at(context, builder, sig.args[0], args[0], args[1]), vty.as_pointer())
        whole = builder.icmp_signed(">=", args[2], ir.Constant(args[2].type, vt.lanes))
        with builder.if_else(whole) as (then, otherwise):
            with then:
                full = builder.load(ptr, align=1)
                b_full = builder.block
            with otherwise:
                part = _llvm(builder, "llvm.masked.load.VEC.p0", vty, vty,
                             [ptr, ir.Constant(_I32, 1), _first(builder, args[2], vt.lanes), ir.Constant(vty, None)])
                b_part = builder.block
        phi = builder.phi(vty)
        phi.add_incoming(full, b_full)
        phi.add_incoming(part, b_part)
        return phi
    return vt(a, i, n), codegen


@intrinsic
def _vstore(typingctx, a, i, v, n):
    """a[i:i + n] = the first n lanes of v (n >= lanes: a plain store; else masked)."""
    def codegen(context, builder, sig, args):
        vty = args[2].type
        ptr = builder.bitcast(_at(context, builder, sig.args[0], args[0], args[1]), vty.as_pointer())
        whole = builder.icmp_signed(">=", args[3], ir.Constant(args[3].type, vty.count))
        with builder.if_else(whole) as (then, otherwise):
            with then:
                builder.store(args[2], ptr, align=1)
            with otherwise:
                _llvm(builder, "llvm.masked.store.VEC.p0", vty, ir.VoidType(),
                      [args[2], ptr, ir.Constant(_I32, 1), _first(builder, args[3], vty.count)])
    return types.void(a, i, v, n), codegen


@intrinsic
def _ld(typingctx, a, i):
    """Flat element i of a (numba's own indexing adds a negative-index select per load)."""
    def codegen(context, builder, sig, args):
        return builder.load(_at(context, builder, sig.args[0], *args))
    return a.dtype(a, i), codegen


@intrinsic
def _vfma(typingctx, acc, x, b):
    """acc + x * b, the scalar x broadcast to every lane: one FMA instruction."""
    def codegen(context, builder, sig, args):
        acc, x, b = args
        return _llvm(builder, "llvm.fma.VEC", acc.type, acc.type, [_splat(builder, x, acc.type), b, acc])
    return acc(acc, x, b), codegen


@intrinsic
def _vadd(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fadd(*args)
    return a(a, b), codegen
