"""cbloss.adapters.jax under jax.jit: the loss, and its gradient from jax.vjp through the adapter's custom_jvp.

Labels and weights are jit arguments (traced), so this exercises the compiled path, not the eager checks.
float64 needs jax_enable_x64, switched on here before any array is made. jax is imported lazily so that
collecting the suite never imports a framework it does not test.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from . import Backend


@cache
def _step(options: tuple):
    import jax

    from cbloss.adapters.jax import class_balanced_loss

    kwargs = dict(options)

    @jax.jit
    def step(logits, labels, weights, cotangent):
        value, vjp = jax.vjp(lambda z: class_balanced_loss(z, labels, weights, **kwargs), logits)
        (grad,) = vjp(cotangent.astype(value.dtype))
        return value, grad

    return step


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
