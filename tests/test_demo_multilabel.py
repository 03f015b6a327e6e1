"""``cbloss demo --task multi-label``: the long-tailed multi-label data, the NumPy backend's multi-hot training,
and the quick run end to end from the command line (JSON, picture, table vs JSON, conclusions vs numbers).

Framework-free: runs in nox's tests(numpy) session, which installs the ``demo`` extra.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) is not installed")

import cbloss
from cbloss.demo import backends
from cbloss.demo.data import long_tailed_counts
from cbloss.demo.models import init_params
from cbloss.demo.multilabel import (
    MIN_CLEAR_AP,
    load_multilabel_pool,
    long_tailed_multilabel_split,
    per_class_ap,
    per_class_f1,
)
from tests.test_cli import PNG_MAGIC, run_cli


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    return load_multilabel_pool()


def test_pool_is_fixed_and_multi_label(pool):
    x, y = pool
    assert x.shape == (5000, 64) and y.shape == (5000, 10)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    assert y.sum(axis=1).min() >= 1  # no unlabelled sample
    assert 1.3 < y.sum(axis=1).mean() < 2.0  # multi-label: several positives per sample on average
    assert np.all(x >= 0) and abs(x.mean() - 0.3) < 1e-3
    x2, y2 = load_multilabel_pool()
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_is_long_tailed_and_disjoint(pool, seed):
    x, y = pool
    split = long_tailed_multilabel_split(x, y, seed, n_test=1000, n_max=200, imbalance=50)
    assert len(split.test_index) == 1000
    assert not set(split.train_index) & set(split.test_index)
    np.testing.assert_array_equal(split.y_train, y[split.train_index])
    np.testing.assert_array_equal(split.x_test, x[split.test_index])
    # counts are the training positives; they never exceed the long-tailed targets
    np.testing.assert_array_equal(split.counts, split.y_train.sum(axis=0).astype(int))
    np.testing.assert_array_equal(np.sort(split.targets)[::-1], long_tailed_counts(200, 50, 10))
    assert np.all(split.counts <= split.targets) and np.all(split.counts >= 1)
    # every class but possibly the largest reaches its target; the order is by realised count
    order = split.class_order
    assert np.all(np.diff(split.counts[order]) <= 0)
    assert np.sum(split.counts < split.targets) <= 1
    assert split.counts[order[0]] / split.counts[order[-1]] >= 30
    # every class has enough test positives for a stable AP
    assert split.y_test.sum(axis=0).min() >= 50
    # reproducible
    again = long_tailed_multilabel_split(x, y, seed, n_test=1000, n_max=200, imbalance=50)
    np.testing.assert_array_equal(again.train_index, split.train_index)


def test_per_class_ap_and_f1_by_definition():
    rng = np.random.default_rng(3)
    y = (rng.random((60, 3)) < 0.3).astype(np.float32)
    scores = rng.normal(size=(60, 3)) + 2 * y
    ap = per_class_ap(y, scores)
    for c in range(3):
        # AP = mean over the positives of the precision at their rank (no ties in continuous scores)
        order = np.argsort(-scores[:, c])
        hits = y[order, c] > 0
        precision = np.cumsum(hits) / np.arange(1, 61)
        assert ap[c] == pytest.approx(precision[hits].mean(), rel=1e-12)
    predicted = scores > 1
    f1 = per_class_f1(y, predicted)
    for c in range(3):
        tp = np.sum(predicted[:, c] & (y[:, c] > 0))
        assert f1[c] == pytest.approx(2 * tp / (predicted[:, c].sum() + y[:, c].sum()))


@pytest.mark.parametrize("mode", ["class", "sample"])
def test_numpy_backend_first_step_follows_the_multi_hot_gradient(pool, mode):
    """Adam's first step is -lr * sign(gradient) (up to eps): the backend trains on the core's multi-hot
    gradient of the chosen weighting."""
    x, y = pool
    x, y = x[:200], y[:200]
    weights = cbloss.class_balanced_weights(cbloss.count_samples_per_class(y, 10, multi_label=True), 0.99)
    ((w0, b0),) = init_params("linear", 64, 10, seed=0)
    ((w1, b1),) = backends.load("numpy").fit([(w0, b0)], x, y, weights, loss="focal", gamma=2.0, steps=1, lr=0.01,
                                             multi_label=mode)  # fmt: skip
    _, g = cbloss.class_balanced_loss_and_grad(x @ w0 + b0, y, weights.astype(np.float32), loss="focal", gamma=2.0,
                                               multi_label=mode)  # fmt: skip
    big = np.abs(x.T @ g) > 1e-5
    np.testing.assert_allclose((w1 - w0)[big], -0.01 * np.sign(x.T @ g)[big], rtol=1e-3)
    np.testing.assert_allclose(b1 - b0, -0.01 * np.sign(g.sum(axis=0)), rtol=1e-3)


# ------------------------------------------------------------------------------------------------------------
# The quick run end to end
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_multilabel(tmp_path_factory):
    out = tmp_path_factory.mktemp("multilabel")
    json_path = out / "numbers.json"
    result = run_cli("demo", "--task", "multi-label", "--quick", "--backend", "numpy", "--out",
                     str(out / "pictures"), "--json", str(json_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result, out / "pictures", json.loads(json_path.read_text())


def test_quick_run_writes_its_results(quick_multilabel):
    result, pictures, record = quick_multilabel
    assert "Traceback" not in result.stderr
    assert "runs" in result.stderr  # the progress bar
    assert (pictures / "per_class_ap.png").read_bytes()[:8] == PNG_MAGIC
    assert (pictures / "report.md").read_text().strip() == result.stdout.strip()
    config = record["config"]
    assert config["task"] == "multi-label" and config["backend"] == "numpy"
    assert len(config["seeds"]) == 3 and config["steps"] == 100
    methods = {m["key"]: m for m in config["methods"]}
    assert {(m["loss"], m["multi_label"]) for m in methods.values() if m["kind"] == "cb"} == {
        ("sigmoid", "class"),
        ("focal", "class"),
        ("sigmoid", "sample"),
        ("focal", "sample"),
    }
    assert methods["bce"]["beta"] is None and methods["bce"]["loss"] == "sigmoid"
    assert methods["inverse_frequency_class"]["beta"] == 1.0
    assert set(methods) == {"bce", "inverse_frequency_class", "inverse_frequency_sample", "cb_class_sigmoid",
                            "cb_class_focal", "cb_sample_sigmoid", "cb_sample_focal"}  # fmt: skip
    runs = record["runs"]
    assert len(runs) == len(config["models"]) * len(config["imbalance_factors"]) * 3 * len(methods)
    for run in runs:
        ap = np.array(run["ap_by_rank"])
        assert ap.shape == (10,) and np.all(np.isfinite(ap)) and np.all((ap >= 0) & (ap <= 1))
        assert run["map"] == pytest.approx(ap.mean(), abs=1e-12)
        assert run["head_ap"] == pytest.approx(ap[:3].mean(), abs=1e-12)
        assert run["tail_ap"] == pytest.approx(ap[-3:].mean(), abs=1e-12)
        assert 0 <= run["macro_f1"] <= 1
        counts = np.array(run["counts_by_rank"])
        assert np.all(np.diff(counts) <= 0) and counts[-1] >= 1
        method = methods[run["method"]]
        if method["beta"] is None:
            assert run["weights_by_rank"] is None
        else:
            expected = cbloss.class_balanced_weights(counts, method["beta"], normalize=config["normalize"])
            np.testing.assert_allclose(run["weights_by_rank"], expected, rtol=1e-12)
    # the same seed gives every method the same split (paired runs)
    for seed in config["seeds"]:
        assert len({tuple(r["counts_by_rank"]) for r in runs if r["seed"] == seed}) == 1


def test_paired_differences_are_differences_of_the_per_seed_numbers(quick_multilabel):
    _, _, record = quick_multilabel
    for model, blocks in record["summary"].items():
        for imbalance, block in blocks.items():
            runs = [r for r in record["runs"] if r["model"] == model and f"{r['imbalance']:g}" == imbalance]
            bce = [100 * r["map"] for r in sorted(runs, key=lambda r: r["seed"]) if r["method"] == "bce"]
            assert block["bce"]["map"]["values"] == pytest.approx(bce)
            assert block["bce"]["map"]["mean"] == pytest.approx(np.mean(bce))
            assert block["bce"]["map"]["std"] == pytest.approx(np.std(bce, ddof=1))
            for key, entry in block.items():
                if key == "bce":
                    assert "delta_map_vs_bce" not in entry
                    continue
                mine = [100 * r["map"] for r in sorted(runs, key=lambda r: r["seed"]) if r["method"] == key]
                delta = entry["delta_map_vs_bce"]
                assert delta["values"] == pytest.approx(np.subtract(mine, bce), abs=1e-9)
                assert delta["mean"] == pytest.approx(entry["map"]["mean"] - block["bce"]["map"]["mean"], abs=1e-9)


def _parse_table(stdout: str) -> dict:
    rows, model = {}, None
    number = r"([+-]?\d+\.\d+) ± (\d+\.\d+)"
    for line in stdout.splitlines():
        m = re.match(r"Model: .*\((\w+)\); mean", line)
        if m:
            model = m.group(1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.match(number, cells[2]):
            rows[(model, cells[0], cells[1])] = [
                tuple(map(float, re.match(number, c).groups())) if c != "—" else None for c in cells[2:]
            ]
    return rows


def test_printed_table_matches_the_json(quick_multilabel):
    result, _, record = quick_multilabel
    labels = {m["key"]: m["label"] for m in record["config"]["methods"]}
    table = _parse_table(result.stdout)
    n = 0
    for model, blocks in record["summary"].items():
        for imbalance, block in blocks.items():
            for key, entry in block.items():
                printed = table[(model, imbalance, labels[key])]
                metrics = ["map", "head_ap", "tail_ap", "macro_f1", "delta_map_vs_bce"]
                for value, metric in zip(printed, metrics, strict=True):
                    if value is None:
                        assert key == "bce"
                        continue
                    assert value[0] == pytest.approx(entry[metric]["mean"], abs=0.005 + 1e-9)
                    assert value[1] == pytest.approx(entry[metric]["std"], abs=0.005 + 1e-9)
                n += 1
    assert n == len(table) > 0


def _verdict(values) -> str:
    values = np.asarray(values)
    mean, std = values.mean(), values.std(ddof=1)
    clear = abs(mean) > max(2 * std / np.sqrt(len(values)), MIN_CLEAR_AP)
    return ("better" if mean > 0 else "worse") if clear else "unclear"


def test_conclusions_say_what_the_numbers_say(quick_multilabel):
    result, _, record = quick_multilabel
    labels = {m["key"]: m["label"] for m in record["config"]["methods"]}
    methods = {m["key"]: m for m in record["config"]["methods"]}
    phrase = {"better": "beats", "worse": "is worse than", "unclear": "is not clearly different from"}
    settings = record["conclusions"]["settings"]
    assert len(settings) == len(record["config"]["models"])
    counts = {"better": 0, "worse": 0, "unclear": 0}
    for s in settings:
        block = record["summary"][s["model"]][f"{s['imbalance']:g}"]
        best = max((k for k in block if methods[k]["kind"] == "cb"), key=lambda k: block[k]["map"]["mean"])
        assert s["best_cb"] == best
        expected = _verdict(np.subtract(block[best]["map"]["values"], block["bce"]["map"]["values"]))
        assert s["best_cb_vs_bce"]["verdict"] == expected
        counts[expected] += 1
        line = f"{s['model']}, imbalance {s['imbalance']:g}: best class-balanced setting {labels[best]}"
        assert f"{line} {phrase[expected]} plain BCE" in result.stdout
        # against inverse frequency with the best setting's weighting mode
        ref = f"inverse_frequency_{methods[best]['multi_label']}"
        d = np.subtract(block[best]["map"]["values"], block[ref]["map"]["values"])
        assert s["best_cb_vs_inverse_frequency"]["reference"] == ref
        assert s["best_cb_vs_inverse_frequency"]["verdict"] == _verdict(d)
        assert f"{phrase[_verdict(d)]} {labels[ref]}" in result.stdout
        # "sample" against "class", same loss and weights
        for loss in ("sigmoid", "focal"):
            d = np.subtract(block[f"cb_sample_{loss}"]["map"]["values"], block[f"cb_class_{loss}"]["map"]["values"])
            assert s["sample_vs_class"][f"CB {loss}"]["verdict"] == _verdict(d)
        # the "class" weighting of a model without shared parameters is called identical to the unweighted
        # loss exactly when every per-seed difference is below 0.01 AP points
        for key, same in s["class_same_as_unweighted"].items():
            ref = "focal" if methods[key]["loss"] == "focal" else "bce"
            assert ref in block
            d = np.subtract(block[key]["map"]["values"], block[ref]["map"]["values"])
            assert same == bool(np.max(np.abs(d)) < 0.01)
            assert (labels[key] in next((t for t in record["conclusions"]["text"] if "unweighted loss" in t
                                          and t.startswith(s["model"])), "")) == same  # fmt: skip
    assert record["conclusions"]["overall"]["best_cb_vs_bce"] == counts
    overall = next(t for t in record["conclusions"]["text"] if t.startswith("Overall"))
    assert f"clearly in {counts['better']}, is clearly worse in {counts['worse']}" in overall


def test_class_weighting_does_not_change_a_linear_model_trained_with_adam(quick_multilabel):
    """'class' multiplies each class's binary loss by w_c; a linear model has no parameter shared between
    classes, and Adam's update is invariant to a constant gradient scale (up to eps), so the runs coincide."""
    _, _, record = quick_multilabel
    assert "linear" in record["summary"], "the quick run trains the linear model"
    block = record["summary"]["linear"]["50"]
    for key in ("cb_class_sigmoid", "inverse_frequency_class"):
        np.testing.assert_allclose(block[key]["map"]["values"], block["bce"]["map"]["values"], atol=0.05)
    assert set(record["conclusions"]["settings"][0]["class_same_as_unweighted"]) == {
        "cb_class_sigmoid", "inverse_frequency_class"
    }  # fmt: skip


def test_full_run_adds_the_two_controls():
    from cbloss.demo.multilabel import MultiLabelConfig

    keys = [m.key for m in MultiLabelConfig().methods]
    assert keys == ["bce", "focal", "inverse_frequency_class", "inverse_frequency_sample", "cb_class_sigmoid",
                    "cb_class_focal", "cb_sample_sigmoid", "cb_sample_focal"]  # fmt: skip
    assert MultiLabelConfig().seeds == 5 and MultiLabelConfig.quick().seeds == 3
