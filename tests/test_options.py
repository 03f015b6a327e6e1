"""The options are written once (cbloss/options.py): the loss list, the signatures and the docstrings derive from
that one place, and every option is checked with an error that names it (docs/conventions.md §11)."""

from __future__ import annotations

import importlib
import math
import typing
from pathlib import Path

import numpy as np
import pytest

import cbloss
from cbloss import options
from cbloss.losses import LOSSES
from tests.examples import check_examples_run_as_pasted

# Each core module with docstring examples, and the public names it defines (each needs an example).
CORE_MODULES = {
    "cbloss.functional": ("class_balanced_loss", "class_balanced_loss_and_grad"),
    "cbloss.module": ("ClassBalancedLoss",),
    "cbloss.weights": ("class_balanced_weights", "count_samples_per_class"),
    "cbloss.effective_number": ("effective_number", "effective_number_recursive", "beta_from_volume"),
    "cbloss.losses.softmax": (),
    "cbloss.losses.sigmoid": (),
    "cbloss.losses.softmax_focal": (),
    "cbloss.schedules": ("DeferredReweighting", "BetaWarmup"),
    "cbloss.validation": ("validate_labels",),
    "cbloss.counts": ("sum_over_replicas",),
}


def test_loss_names_are_the_registry():
    assert set(typing.get_args(options.LossName)) == set(LOSSES)


def test_focal_losses_reduce_to_their_plain_loss_at_gamma_zero():
    for name, spec in LOSSES.items():
        if spec.without_focusing is not None:
            assert options.loss_options(loss=name, gamma=0.0).kind == spec.without_focusing
            assert options.loss_options(loss=name).gamma == 2.0


@pytest.mark.parametrize(
    "name, bad",
    [
        ("loss", "cross_entropy"),
        ("reduction", "avg"),
        ("gamma", -1.0),
        ("gamma", math.inf),
        ("gamma", math.nan),
        ("label_smoothing", 1.5),
        ("ignore_index", 1.5),
    ],
)
def test_each_option_is_checked_naming_itself(name, bad):
    kwargs = {"loss": "focal"} if name == "gamma" else {}
    kwargs[name] = bad
    with pytest.raises((ValueError, TypeError), match=f"^{name}:"):
        cbloss.class_balanced_loss(np.zeros((2, 3)), np.array([0, 1]), **kwargs)


@pytest.mark.parametrize(
    "misspelt, meant", [("label_smooting", "label_smoothing"), ("gama", "gamma"), ("reductions", "reduction")]
)
def test_unknown_option_is_a_type_error_naming_it_and_the_option_it_is_close_to(misspelt, meant):
    with pytest.raises(TypeError, match=rf"^{misspelt}: unknown option; .*; did you mean '{meant}'\?$"):
        cbloss.class_balanced_loss(np.zeros((2, 3)), np.array([0, 1]), **{misspelt: 0.1})


def test_an_unknown_option_close_to_none_gets_no_guess():
    with pytest.raises(TypeError, match=r"^sample_weights: unknown option; the options are \[[^]]*\]$"):
        cbloss.class_balanced_loss(np.zeros((2, 3)), np.array([0, 1]), sample_weights=np.ones(2))


def test_unknown_module_option_lists_the_weight_options_too():
    with pytest.raises(
        TypeError,
        match=r"^normalise: unknown option; the options are \[.*'normalize', 'zero_count'\]; did you mean 'normalize'",
    ):
        cbloss.ClassBalancedLoss([1, 2], 0.9, normalise="samples")


def test_options_are_hashable_and_equal_by_value():
    a = options.loss_options(loss="focal", gamma=1.0)
    b = options.loss_options(gamma=1.0, loss="focal")
    assert a == b and hash(a) == hash(b) and a != options.loss_options(loss="focal")


def test_options_are_immutable_and_survive_pickling_and_copying():
    """Options are a jit/compile cache key and a part of saved losses: immutable, and equal (with the derived
    ``kind``) after a pickle or a deep copy."""
    import copy
    import pickle

    opts = options.loss_options(loss="focal", gamma=0.0, label_smoothing=0.1)
    with pytest.raises(AttributeError, match="immutable"):
        opts.gamma = 2.0
    with pytest.raises(AttributeError, match="immutable"):
        del opts.kind  # the engine reads it on every call
    assert opts.gamma == 0.0 and opts.kind == "sigmoid"
    for again in (pickle.loads(pickle.dumps(opts)), copy.deepcopy(opts)):
        assert again == opts and hash(again) == hash(opts) and again.kind == opts.kind == "sigmoid"
        assert len(again) == len(opts) == len(options.LOSS_OPTIONS)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(loss="softmax", multi_label="class"), "multi_label"),
        (dict(loss="softmax_focal", multi_label="sample"), "multi_label"),
        (dict(loss="sigmoid", multi_label="class", ignore_index=-1), "ignore_index"),
        (dict(loss="focal", multi_label="class", reduction="weighted_mean"), "reduction"),
    ],
)
def test_multi_label_pairs_are_checked_naming_the_option_at_fault(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        options.loss_options(**kwargs)


@pytest.mark.parametrize("name", list(options.LOSS_OPTIONS))
def test_every_loss_option_is_in_the_public_docstrings(name):
    for func in (cbloss.class_balanced_loss, cbloss.class_balanced_loss_and_grad, cbloss.ClassBalancedLoss):
        assert f"{name} (default" in func.__doc__


@pytest.mark.parametrize("module", CORE_MODULES)
def test_docstring_examples_run_as_pasted(module):
    check_examples_run_as_pasted(importlib.import_module(module), CORE_MODULES[module])


def test_every_public_name_is_given_an_example():
    public = {name for name in cbloss.__all__ if name != "schedules"} | set(cbloss.schedules.__all__)
    assert public == {name for names in CORE_MODULES.values() for name in names} - {"sum_over_replicas"}


@pytest.mark.parametrize(
    "options",
    [
        dict(loss="focal", multi_label="sample", label_smoothing=0.1),
        dict(loss="softmax_focal", ignore_index=-1, gamma=0.5),
    ],
)
def test_neutral_repr_shows_every_option_that_differs_from_its_default(options):
    text = repr(cbloss.ClassBalancedLoss([5, 3, 1], 0.9, **options))
    for name, value in options.items():
        assert f"{name}={value!r}" in text


def _table_rows(path: str, header: str) -> list[list[str]]:
    """The cells (backticks and quotes stripped) of the markdown table whose header row starts with ``header``."""
    lines = (Path(__file__).parents[1] / path).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("`", "").strip('"') for cell in line.strip("|").split("|")])
    return rows


def test_the_docs_loss_tables_are_the_registry():
    """docs/conventions.md §4 states each registered loss's L_c(z), LossSpec.formula, in the registry's order; the
    README's table lists the same losses."""
    rows = _table_rows("docs/conventions.md", "| `loss=` | `L_c(z)` |")
    assert rows == [[name, spec.formula] for name, spec in LOSSES.items()]
    readme = _table_rows("README.md", "| `loss=` | per-position loss")
    assert [row[0].split('"')[0].strip() for row in readme] == list(LOSSES)


@pytest.mark.parametrize("build", ["options", "module"])
def test_an_infinite_gamma_is_refused_when_the_options_are_made(build):
    """gamma = inf is no focusing strength (q**inf is 0 or NaN): refused where the options are read, not at the
    first call with a message about the compute dtype."""
    with pytest.raises(ValueError, match=r"^gamma: must be finite, got inf"):
        if build == "options":
            options.loss_options(loss="focal", gamma=math.inf)
        else:
            cbloss.ClassBalancedLoss([1, 2], 0.9, loss="focal", gamma=math.inf)
