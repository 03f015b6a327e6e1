"""TorchPrimitives (PyTorch's kernels for the core's named pieces) against the generic Primitives on the same
tensors, float64, in both layouts the adapter hands them (a contiguous (N, C) and the class-last view of a
contiguous (N, C, H, W)); the functional contract of cbloss/primitives.py (arguments untouched, results new);
and the out-of-range labels that gather/scatter reject where the generic mask would skip them."""

from __future__ import annotations

import functools
import itertools
import math
import weakref

import array_api_compat.torch as xp
import pytest
import torch

from cbloss.adapters import _torch_kernels
from cbloss.adapters.torch import TorchPrimitives
from cbloss.losses import sigmoid
from cbloss.primitives import Primitives

GENERIC, FUSED = Primitives(xp), TorchPrimitives(xp)
LAYOUTS = ["NxC", "NCHW-view", "C"]


def _case(layout):
    g = torch.Generator().manual_seed(0)
    x = {
        "NxC": lambda: torch.randn(7, 6, generator=g, dtype=torch.float64) * 30,
        "NCHW-view": lambda: (torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64) * 30).movedim(1, -1),
        "C": lambda: torch.randn(6, generator=g, dtype=torch.float64) * 30,
    }[layout]()
    labels = torch.randint(0, x.shape[-1], x.shape[:-1], generator=g)
    values = torch.rand(x.shape[:-1], generator=g, dtype=torch.float64)
    weights = torch.rand(x.shape[-1], generator=g, dtype=torch.float64)
    return x, labels, values, weights


def _interpolation(x):
    """A second array and weights in [0, 1] for lerp, shaped and laid out like ``x``, with weights 0 and 1."""
    weight = torch.remainder(x, 1.0)
    weight[..., 0], weight[..., 1] = 0.0, 1.0
    return x * 0.5 - 3.0, weight


def _pieces(ops, x, labels, values, weights):
    """Every named piece, flattened to a list of tensors."""
    out = [ops.logsumexp(x), *ops.softmax_and_logsumexp(x), ops.softplus(x), *ops.softplus_and_sigmoids(x)]
    out += [*ops.softplus_and_sigmoid(x), *ops.softplus_pair_and_sigmoids(x)]
    other, weight = _interpolation(x)
    out += [ops.lerp(x, other, weight), ops.lerp_(x.clone(), other, weight)]
    out += [ops.class_sum(x), ops.class_sum(x, weights)]
    out += [ops.take_label(x, labels), ops.put_at_label(x, labels, values)]
    out += [ops.put_at_label_(x.clone(), labels, values), ops.take_weights(weights, labels)]  # a fresh array
    return [*out, ops.label_mask(labels, x.shape[-1])]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_pieces_match_the_generic_definitions(layout):
    args = _case(layout)
    fused, generic = _pieces(FUSED, *args), _pieces(GENERIC, *args)
    # logsumexp as max(x) - log(max(p)) against max + log(sum): a few ulps of |x| (~100); the rest relative.
    tolerances = {1: dict(rtol=1e-13, atol=1e-300), 2: dict(rtol=1e-14, atol=1e-13)}
    for i, (a, b) in enumerate(zip(fused, generic, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, i
        torch.testing.assert_close(a, b, **tolerances.get(i, dict(rtol=1e-13, atol=1e-300)))
    # indexing is exact
    for a, b in zip(fused[-5:], generic[-5:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("with_grad", [True, False])
@pytest.mark.parametrize("shape", [(300, 1000), (3, 70000), (2, 6, 150, 160), (1, 3, 40000)], ids=str)
def test_position_blocks_give_the_evaluation_of_the_whole(shape, with_grad):
    """Arrays beyond one block (TorchPrimitives.in_position_blocks): rows in blocks, rows too large one at a time
    and split further, in both layouts. The multi-hot focal evaluation in blocks gives what it gives on the whole
    array: each position's value (or their total: the blocks' totals added), and the gradient in the logits'
    layout, to rounding."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 30
    x = x.movedim(1, -1) if len(shape) > 2 else x
    _, targets = _interpolation(x)
    weights = torch.rand(x.shape[-1], generator=g, dtype=torch.float64)
    for w, total in itertools.product((weights, None), (False, True)):
        options = dict(class_weights=w, gamma=2.0, with_grad=with_grad, total=total)
        evaluate = functools.partial(sigmoid._focal, FUSED, **options)
        got, got_grad = FUSED.in_position_blocks(evaluate, x, targets, total)
        want, want_grad = evaluate(x, targets)
        assert got.shape == want.shape == (() if total else x.shape[:-1])
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12 * float(want.abs().max()))
        if not with_grad:
            assert got_grad is None and want_grad is None
            continue
        assert got_grad.shape == x.shape and got_grad.stride() == x.stride()
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(300, 1000), (7000, 10), (2, 6, 150, 160), (1, 3, 40000)], ids=str)
def test_position_blocks_are_even_and_each_is_released_before_the_next(shape):
    """TorchPrimitives.in_position_blocks: as many blocks as the block size needs, of equal rows (the last no
    larger), and a block's gradient, once copied into the result, no longer alive while the next block is
    evaluated, so that at most one block's temporaries exist at a time."""
    x = torch.randn(shape, dtype=torch.float64)
    x = x.movedim(1, -1) if len(shape) > 2 else x
    block = _torch_kernels._BLOCK["cpu"]
    earlier: list[weakref.ref] = []
    rows: list[tuple[int, ...]] = []

    def evaluate(z, t):
        assert all(gradient() is None for gradient in earlier)
        rows.append(tuple(z.shape[:-1]))
        gradient = z * t
        earlier.append(weakref.ref(gradient))
        return torch.sum(gradient, dim=-1), gradient

    value, gradient = FUSED.in_position_blocks(evaluate, x, torch.ones_like(x))
    torch.testing.assert_close(value, x.sum(-1), rtol=0, atol=0)
    torch.testing.assert_close(gradient, x, rtol=0, atol=0)
    sizes = [math.prod(r) * x.shape[-1] for r in rows]
    assert len(rows) > 1 and max(sizes) < 2 * block
    if x[0].numel() <= block:  # blocks of leading rows
        assert len(rows) == -(-x.numel() // block)
        assert all(r == rows[0] for r in rows[:-1]) and rows[-1] <= rows[0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_pieces_leave_their_arguments_alone_and_return_new_tensors(layout):
    """cbloss/primitives.py: never write into an argument; what a piece returns belongs to the caller, so
    writing into it must not change an argument."""
    args = _case(layout)
    before = [a.clone() for a in args]
    results = _pieces(FUSED, *args)
    for arg, saved in zip(args, before, strict=True):
        torch.testing.assert_close(arg, saved, rtol=0, atol=0)
    for result in results:
        result.zero_() if result.dtype != torch.bool else result.fill_(False)
    for arg, saved in zip(args, before, strict=True):
        torch.testing.assert_close(arg, saved, rtol=0, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS[:2])
def test_put_at_label_in_place_writes_into_the_fresh_array_it_is_handed(layout):
    """put_at_label_ is the one piece that writes: into an array its caller has just allocated and hands over,
    which PyTorch updates in place (no copy of the whole array); the result equals the functional put_at_label."""
    x, labels, values, _ = _case(layout)
    fresh = x.clone()
    out = FUSED.put_at_label_(fresh, labels, values)
    assert out.data_ptr() == fresh.data_ptr()
    torch.testing.assert_close(out, GENERIC.put_at_label(x, labels, values), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_softplus_and_sigmoids_writes_sigmoid_of_minus_x_into_the_array_it_is_handed(layout, dtype):
    """softplus_and_sigmoids_ takes sigmoid(-x) in place of the fresh array its caller hands over (one tensor
    fewer); the three results equal the functional softplus_and_sigmoids bit for bit, and the generic definitions
    to a few ulps, saturated entries included."""
    x = _case(layout)[0].to(dtype)
    x[..., :5] = torch.tensor([-800.0, -60.0, 0.0, 60.0, 800.0], dtype=dtype)
    fresh = x.clone()
    got = FUSED.softplus_and_sigmoids_(fresh)
    assert got[2].data_ptr() == fresh.data_ptr()
    for a, b in zip(got, FUSED.softplus_and_sigmoids(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    rtol = 1e-13 if dtype == torch.float64 else 1e-6
    for a, b in zip(got, GENERIC.softplus_and_sigmoids(x), strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=torch.finfo(dtype).tiny)


@pytest.mark.parametrize("negated", [False, True], ids=["x", "negation"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_graphs_shared_exponential_matches_mpmath(dtype, negated):
    """The one-exp forms TorchPrimitives takes inside a compiled graph (the core's SharedExpPrimitives on torch
    tensors), at x and at -x (the other side, from x's own expressions), against mpmath across the whole range: a
    few ulps of each result's own magnitude, tiny sigmoids included."""
    import mpmath
    import numpy as np

    from cbloss.adapters._torch_kernels import _SHARED_EXP

    values = np.concatenate([np.linspace(-60.0, 60.0, 241), [-800.0, -100.0, -1e-30, -0.0, 0.0, 1e-30, 100.0, 800.0]])
    x = torch.tensor(values, dtype=dtype)
    pieces = _SHARED_EXP.softplus_and_sigmoids_of_negation(x) if negated else _SHARED_EXP.softplus_and_sigmoids(x)
    got = [piece.double().numpy() for piece in pieces]
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    with mpmath.workdps(40):
        for i, v in enumerate(x.double().tolist()):
            m = -mpmath.mpf(v) if negated else mpmath.mpf(v)
            want = [mpmath.log1p(mpmath.exp(m)), 1 / (1 + mpmath.exp(-m)), 1 / (1 + mpmath.exp(m))]
            for name, g, w in zip(("softplus", "sigmoid(x)", "sigmoid(-x)"), got, want, strict=True):
                w = float(w)
                assert abs(g[i] - w) <= 4 * eps * abs(w) + tiny, (name, v, g[i], w)


@pytest.mark.parametrize("bad", [-1, -100, 6, -(2**63)])
@pytest.mark.parametrize("layout", ["NxC", "NCHW-view"])
def test_label_indexing_rejects_every_out_of_range_label(bad, layout):
    """The generic put_at_label_ compares with arange(C) and would leave a row with a label outside [0, C)
    unchanged; PyTorch's gather and scatter raise instead, so no unchecked label is ever skipped silently."""
    x, labels, values, _ = _case(layout)
    labels.view(-1)[1] = bad
    with pytest.raises((RuntimeError, IndexError)):
        FUSED.take_label(x, labels)
    with pytest.raises((RuntimeError, IndexError)):
        FUSED.put_at_label_(x.clone(), labels, values)


def test_softplus_keeps_float64_digits_above_pytorchs_default_threshold():
    """F.softplus's default threshold (20) returns x itself, off by up to 2.7e5 ulps in float64 for 20 < x < 37."""
    x = torch.tensor([20.5, 25.0, 30.0, 36.0], dtype=torch.float64)
    exact = x + torch.log1p(torch.exp(-x))
    torch.testing.assert_close(FUSED.softplus(x), exact, rtol=2e-16, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sign_split_sigmoid_keeps_relative_digits(dtype):
    """PyTorch's in-place sign split (on the sign bit: +0 positive, -0 not) against mpmath, like the generic one."""
    from tests.test_primitives import X, _check_sign_split

    x = torch.tensor([*X.tolist(), -0.0], dtype=dtype)
    before = x.clone()
    h, rest, signed = FUSED.sign_split_sigmoid(x)
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # the argument is untouched
    assert h.dtype == rest.dtype == signed.dtype == dtype
    _check_sign_split(x.numpy(), h.numpy(), rest.numpy(), signed.numpy())
