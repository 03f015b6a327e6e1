"""The options of a class-balanced loss, each defined once: name, type, default, check and one-line doc.

:class:`LossKwargs` (:class:`UnreducedLossKwargs` plus ``reduction``, which Keras makes itself) and
:class:`WeightKwargs` are the single listing. Each field's ``Annotated`` metadata is an
:class:`Option` (default, check, doc); the core's functions, the neutral :class:`cbloss.ClassBalancedLoss` and
every adapter take these options as ``**options`` typed with the same ``TypedDict`` (so type checkers see the
names and ``Literal`` values), validate them with :func:`loss_options`/:func:`weight_options`, and append
:func:`options_doc` to their docstrings. Adding an option is one field here, plus its use (docs/architecture.md).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal, NamedTuple, TypedDict

from ._immutable import Immutable
from .losses import FOCAL_DEFAULT_GAMMA, LOSSES
from .validation import check_choice, check_gamma, check_ignore_index, check_label_smoothing

__all__ = [
    "LossKwargs",
    "LossName",
    "LossOptions",
    "Normalize",
    "Reduction",
    "UnreducedLossKwargs",
    "WeightKwargs",
    "ZeroCount",
    "describe",
    "loss_options",
    "options_doc",
    "split_options",
    "weight_options",
    "with_options_doc",
]

LossName = Literal["softmax", "sigmoid", "focal", "softmax_focal"]
Reduction = Literal["none", "sum", "mean", "weighted_mean"]
_Normalization = Literal["classes", "samples"]
Normalize = _Normalization | None
ZeroCount = Literal["error", "zero"]
_MultiLabelMode = Literal["class", "sample"]
MultiLabel = _MultiLabelMode | None

# The choices, from the types above (the type checker needs the Literals written out; the rest derives from them).
REDUCTIONS: tuple[str, ...] = typing.get_args(Reduction)
NORMALIZATIONS: tuple[str | None, ...] = (*typing.get_args(_Normalization), None)
ZERO_COUNTS: tuple[str, ...] = typing.get_args(ZeroCount)
MULTI_LABEL_MODES: tuple[str | None, ...] = (None, *typing.get_args(_MultiLabelMode))


class Option(NamedTuple):
    """An option's default, its check (value -> validated value, raising an error that names the option) and
    its one-line documentation."""

    default: Any
    check: Callable[[Any], Any]
    doc: str


def _check_loss(value: Any) -> str:
    return check_choice("loss", value, tuple(LOSSES))


def _check_gamma_or_none(value: Any) -> float | None:
    return None if value is None else check_gamma(value)


class UnreducedLossKwargs(TypedDict, total=False):
    """The options of every loss but its reduction: those of a loss whose framework reduces it (Keras)."""

    loss: Annotated[
        LossName,
        Option(
            "softmax",
            _check_loss,
            f"one of {', '.join(map(repr, LOSSES))} (docs/conventions.md §4; 'focal' is the paper's sigmoid focal).",
        ),
    ]
    gamma: Annotated[
        float | None,
        Option(
            None,
            _check_gamma_or_none,
            f"focusing exponent of the focal losses (finite, >= 0; default {FOCAL_DEFAULT_GAMMA}); "
            "other losses accept only 0 or None.",
        ),
    ]
    label_smoothing: Annotated[
        float,
        Option(0.0, check_label_smoothing, "eps in [0, 1]: the target becomes (1 - eps) * t + eps / C."),
    ]
    ignore_index: Annotated[
        int | None,
        Option(None, check_ignore_index, "class indices equal to it are not counted (hard labels only)."),
    ]
    multi_label: Annotated[
        MultiLabel,
        Option(
            None,
            lambda value: check_choice("multi_label", value, MULTI_LABEL_MODES),
            "None (one label per position), or multi-hot targets shaped like the logits, weighted per 'class' "
            "(sum_c w_c l_c) or per 'sample' (the mean weight of the position's positives); sigmoid and focal only.",
        ),
    ]


class LossKwargs(UnreducedLossKwargs, total=False):
    """The options of every loss function and module (docs/conventions.md §4-§8)."""

    reduction: Annotated[
        Reduction,
        Option(
            "mean",
            lambda value: check_choice("reduction", value, REDUCTIONS),
            "'none' (per position), 'sum', 'mean' (over counted positions) or 'weighted_mean' (over the "
            "counted positions' weights, like F.cross_entropy(weight=...)).",
        ),
    ]


class WeightKwargs(TypedDict, total=False):
    """How class counts become class weights (docs/conventions.md §2-§3)."""

    normalize: Annotated[
        Normalize,
        Option(
            "classes",
            lambda value: check_choice("normalize", value, NORMALIZATIONS),
            "'classes' (sum of weights = C, the paper's), 'samples' (mean weight over the training set = 1) "
            "or None (raw 1 / E_n).",
        ),
    ]
    zero_count: Annotated[
        ZeroCount,
        Option(
            "error",
            lambda value: check_choice("zero_count", value, ZERO_COUNTS),
            "'error' (a class with 0 samples raises) or 'zero' (it gets weight 0).",
        ),
    ]


class ModuleKwargs(LossKwargs, WeightKwargs, total=False):
    """The options of a loss module built from class counts: the loss's and the weights'."""


def _table(kwargs_type: type) -> dict[str, Option]:
    hints = typing.get_type_hints(kwargs_type, include_extras=True)
    return {name: hint.__metadata__[0] for name, hint in hints.items()}


LOSS_OPTIONS: dict[str, Option] = _table(LossKwargs)
UNREDUCED_LOSS_OPTIONS: dict[str, Option] = _table(UnreducedLossKwargs)
WEIGHT_OPTIONS: dict[str, Option] = _table(WeightKwargs)


class LossOptions(Immutable, Mapping):
    """Validated loss options: immutable, hashable (a ``jit`` static argument), read as attributes
    (``opts.loss``, ``opts.gamma``, ...). ``gamma`` is resolved: the focal default, or 0.0. ``opts.kind`` is the
    loss actually evaluated: a focal loss with gamma = 0 is its non-focal loss."""

    def __init__(self, values: dict[str, Any]):
        # Each option is also a plain instance attribute: read on every call, so no __getattr__ on that path.
        attributes = vars(self)
        attributes.update(values)
        attributes["_values"] = values
        unfocused = LOSSES[values["loss"]].without_focusing  # a focal loss with gamma = 0 *is* this loss, exactly
        attributes["kind"] = unfocused if unfocused and values["gamma"] == 0.0 else values["loss"]

    def __getattr__(self, name: str) -> Any:  # only for names that are not options (and for type checkers)
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LossOptions) and self._values == other._values

    def __reduce__(self) -> tuple:
        return (LossOptions, (dict(self._values),))

    def __repr__(self) -> str:
        return "LossOptions(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def _check_known(given: Mapping[str, Any], known: list[str]) -> None:
    """A ``TypeError`` naming the first of ``given`` that is not ``known``, with the option it is closest to."""
    unknown = [name for name in given if name not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{unknown[0]}: unknown option; the options are {known}{hint}")


def _checked(table: dict[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    _check_known(given, list(table))
    return {name: option.check(given.get(name, option.default)) for name, option in table.items()}


def loss_options(**options: Any) -> LossOptions:
    """Validate loss options (see :class:`LossKwargs`) and fill in the defaults."""
    values = _checked(LOSS_OPTIONS, options)
    focal = LOSSES[values["loss"]].without_focusing is not None
    if values["gamma"] is None:
        values["gamma"] = FOCAL_DEFAULT_GAMMA if focal else 0.0
    elif not focal and values["gamma"] != 0.0:
        focal_losses = [name for name, spec in LOSSES.items() if spec.without_focusing]
        raise ValueError(
            f"gamma: only the focal losses {focal_losses} take gamma; got gamma={values['gamma']} "
            f"with loss={values['loss']!r}"
        )
    if values["multi_label"] is not None:
        if LOSSES[values["loss"]].multi_hot is None:
            multi_hot = [name for name, spec in LOSSES.items() if spec.multi_hot]
            raise ValueError(f"multi_label: applies to the losses {multi_hot}, got loss={values['loss']!r}")
        if values["multi_label"] == "class" and values["reduction"] == "weighted_mean":
            raise ValueError(
                "reduction: 'weighted_mean' has no per-position weight with multi_label='class'; use 'mean', 'sum' "
                "or 'none' (or multi_label='sample')"
            )
        if values["ignore_index"] is not None:
            raise ValueError("ignore_index: does not apply to multi-hot targets (multi_label is set)")
    return LossOptions(values)


def weight_options(**options: Any) -> dict[str, Any]:
    """Validate weight options (see :class:`WeightKwargs`) and fill in the defaults."""
    return _checked(WEIGHT_OPTIONS, options)


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], LossOptions]:
    """A module's ``**options`` as (validated weight options, validated loss options)."""
    _check_known(options, [*LOSS_OPTIONS, *WEIGHT_OPTIONS])
    weight = {k: v for k, v in options.items() if k in WEIGHT_OPTIONS}
    loss = {k: v for k, v in options.items() if k not in WEIGHT_OPTIONS}
    return weight_options(**weight), loss_options(**loss)


def options_doc(table: Mapping[str, Option] = LOSS_OPTIONS) -> str:
    """The options' documentation, one line each, indented for a docstring section."""
    return "\n".join(f"        {name} (default {option.default!r}): {option.doc}" for name, option in table.items())


def describe(opts: LossOptions) -> str:
    """The options that differ from their defaults, ``name=value`` comma-separated (for a loss's repr)."""
    defaults = {name: option.default for name, option in LOSS_OPTIONS.items()}
    defaults["gamma"] = loss_options(loss=opts.loss).gamma
    return ", ".join(f"{name}={value!r}" for name, value in opts.items() if name == "loss" or value != defaults[name])


def with_options_doc(func: Callable) -> Callable:
    """Fill the ``{options}``, ``{unreduced_options}`` and ``{weight_options}`` placeholders of ``func``'s
    docstring from the tables."""
    if func.__doc__:
        for placeholder, table in (
            ("options", LOSS_OPTIONS),
            ("unreduced_options", UNREDUCED_LOSS_OPTIONS),
            ("weight_options", WEIGHT_OPTIONS),
        ):
            func.__doc__ = func.__doc__.replace(f"    {{{placeholder}}}", options_doc(table))
    return func
