"""cbloss: the Class-Balanced Loss (Cui, Jia, Lin, Song, Belongie, CVPR 2019) for every framework.

The core is pure Array-API code (NumPy, array_api_strict, and any namespace array-api-compat knows);
framework adapters live in ``cbloss.adapters`` and are imported only on demand, so ``import cbloss`` imports
no deep-learning framework.
"""

from . import schedules
from .effective_number import beta_from_volume, effective_number, effective_number_recursive
from .functional import class_balanced_loss, class_balanced_loss_and_grad
from .module import ClassBalancedLoss
from .validation import validate_labels
from .weights import class_balanced_weights, count_samples_per_class

__all__ = [
    "ClassBalancedLoss",
    "beta_from_volume",
    "class_balanced_loss",
    "class_balanced_loss_and_grad",
    "class_balanced_weights",
    "count_samples_per_class",
    "effective_number",
    "effective_number_recursive",
    "schedules",
    "validate_labels",
]

__version__ = "0.1.0"
