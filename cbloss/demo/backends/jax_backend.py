"""JAX: ``cbloss.adapters.jax.class_balanced_loss`` (the core's analytic gradient as a ``custom_jvp``),
``jax.grad`` through the tiny model and ``optax.adam``, the whole training loop one jitted ``lax.fori_loop``."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbloss.adapters.jax import class_balanced_loss

from . import ADAM_BETAS, ADAM_EPS

NAME = "jax"


def _forward(params, x):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


@partial(jax.jit, static_argnames=("loss", "gamma", "steps", "lr", "multi_label"))
def _train(params, x, y, weights, *, loss, gamma, steps, lr, multi_label):
    opt = optax.adam(lr, b1=ADAM_BETAS[0], b2=ADAM_BETAS[1], eps=ADAM_EPS)
    per_step = weights is not None and weights.ndim == 2  # a (steps, C) table: row t weighs step t

    def objective(p, w):
        return class_balanced_loss(
            _forward(p, x), y, w, loss=loss, gamma=gamma, reduction="mean", multi_label=multi_label
        )

    def step(t, carry):
        p, state = carry
        grads = jax.grad(objective)(p, weights[t] if per_step else weights)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    return jax.lax.fori_loop(0, steps, step, (params, opt.init(params)))[0]


def fit(layers, x, y, weights, *, loss, gamma, steps, lr, multi_label=None):
    params = [(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in layers]
    # Unweighted runs pass weights=None (a separate trace); weighted runs reuse one trace per shape and loss: the
    # weights, also a per-step table, are traced arguments, so new values cost no recompilation.
    w = None if weights is None else jnp.asarray(np.asarray(weights, dtype=np.float32))
    labels = jnp.asarray(y, jnp.float32 if multi_label else jnp.int32)
    out = _train(params, jnp.asarray(x, jnp.float32), labels, w,
                 loss=loss, gamma=gamma, steps=steps, lr=lr, multi_label=multi_label)  # fmt: skip
    return [(np.asarray(w_, dtype=np.float32), np.asarray(b_, dtype=np.float32)) for w_, b_ in out]
