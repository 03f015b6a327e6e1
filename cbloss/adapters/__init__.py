"""Framework adapters: ``cbloss.adapters.torch``, ``cbloss.adapters.jax``, ``cbloss.adapters.tensorflow`` and
``cbloss.adapters.keras`` (the Keras 3 loss, on whichever of the three Keras runs).

Each adapter imports only its own framework, and only when it is imported itself; importing this package
imports none. An adapter converts arrays (class axis, dtype, device), validates eagerly where its framework
allows, registers the core's analytic gradient as the framework's custom gradient, and may substitute fused
kernels for named primitives or whole losses where they compute the same definition (PyTorch's fused
cross-entropy and BCE); the formulas live in ``cbloss.losses``.
"""
