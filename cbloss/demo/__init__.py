"""``cbloss demo``: the paper's "before / after" experiment on real, bundled data.

Long-tailed training splits of scikit-learn's handwritten digits (``load_digits``, shipped with scikit-learn: no
download) are built the way CIFAR-LT is built, a softmax regression and a one-hidden-layer MLP are trained with
plain softmax cross-entropy ("before"), inverse-frequency weights and class-balanced losses ("after"), and the
top-1 error on a balanced held-out test set is reported over several seeds. See ``docs/demo.md``.

Nothing here is imported by ``import cbloss``; scikit-learn, matplotlib and the frameworks are imported lazily.
"""

from __future__ import annotations

from .experiment import DemoConfig, Method, default_methods, run_experiment

__all__ = ["DemoConfig", "Method", "default_methods", "run_experiment"]
