"""Framework adapters, one module per framework (``torch``, ``jax``, ``tensorflow``), each importing only its own
framework; ``import cbloss`` imports none of them."""
