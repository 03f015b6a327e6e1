"""cbloss.adapters.jax under jax.jit: the loss, and its gradient from jax.vjp through the adapter's custom_jvp.

Labels and weights are jit arguments (traced), so this exercises the compiled path, not the eager checks.
float64 needs jax_enable_x64, switched on here before any array is made. jax is imported lazily so that
collecting the suite never imports a framework it does not test.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from . import Backend

# Nearly every case is a program of its own (options, shapes, dtypes and whether weights are given all differ), so
# the suite's time is XLA compiling a few thousand tiny programs, not running them. On the CPU these options cut
# that compile time about threefold: LLVM at -O0, XLA's elemental emitters instead of its fusion emitters, and
# code generation in one piece rather than split across threads. They change code generation only; the HLO
# passes are XLA's defaults. The machine code may round differently in the last bits (another summation order),
# and every case is still held to the same tolerances (docs/conventions.md §15). tests/jax runs the adapter
# under XLA's default options.
_FAST_CPU_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_parallel_codegen_split_count": 1,
}


@cache
def _step(options: tuple):
    import jax

    from cbloss.adapters.jax import class_balanced_loss

    kwargs = dict(options)

    def step(logits, labels, weights, cotangent):
        value, vjp = jax.vjp(lambda z: class_balanced_loss(z, labels, weights, **kwargs), logits)
        (grad,) = vjp(cotangent.astype(value.dtype))
        return value, grad

    compiler_options = _FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None
    return jax.jit(step, compiler_options=compiler_options)


# Every case compiles its own executable; thousands of them held at once exhausted memory (XLA segfaulted
# while compiling after ~2,700 cases), so the caches are dropped every so often.
_CLEAR_EVERY = 200


class JaxBackend(Backend):
    name = "jax"
    requires = ("jax",)
    low_precision = ("float16", "bfloat16")
    calls = 0

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        import jax

        JaxBackend.calls += 1
        if JaxBackend.calls % _CLEAR_EVERY == 0:
            _step.cache_clear()
            jax.clear_caches()

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        jdtype = jnp.dtype(dtype)
        z = jnp.asarray(logits, dtype=jdtype)
        y = jnp.asarray(labels, dtype=jdtype) if labels.dtype.kind == "f" else jnp.asarray(labels)
        w = None if weights is None else jnp.asarray(weights)
        value, grad = _step(tuple(sorted(options.items())))(z, y, w, jnp.asarray(cotangent))
        assert grad.dtype == jdtype, f"gradient dtype {grad.dtype}, expected {jdtype}"
        return np.asarray(value, dtype=np.float64), np.asarray(grad).astype(np.float64)


BACKEND = JaxBackend()
