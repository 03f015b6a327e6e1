"""The Keras loss: configuration round-trip, Keras' reductions and sample_weight, compile/fit/save/load, mixed
precision, and tf.distribute (MirroredStrategy over two logical CPUs, configured in conftest.py)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

keras = pytest.importorskip("keras", reason="keras is not installed")

import cbloss  # noqa: E402
from cbloss.adapters.tensorflow import ClassBalancedLoss, class_balanced_loss  # noqa: E402

COUNTS = [500, 120, 30, 7]
BETA = 0.99


def _batch(n=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=2.0, size=(n, c)).astype(np.float32), rng.integers(0, c, size=n)


def test_config_round_trip_and_serialisation():
    loss = ClassBalancedLoss(COUNTS, BETA, loss="focal", gamma=1.5, normalize="samples", ignore_index=-1)
    config = loss.get_config()
    again = ClassBalancedLoss.from_config(config)
    assert again.get_config() == config
    np.testing.assert_array_equal(again.class_weights, loss.class_weights)
    np.testing.assert_array_equal(loss.class_weights, cbloss.class_balanced_weights(COUNTS, BETA, normalize="samples"))
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is ClassBalancedLoss and restored.get_config() == config
    explicit = ClassBalancedLoss(weights=[0.5, 1.0, 2.0], reduction="sum", name="cb")
    assert ClassBalancedLoss.from_config(explicit.get_config()).get_config() == explicit.get_config()
    assert ClassBalancedLoss().class_weights is None  # unweighted
    with pytest.raises(ValueError, match=r"^weights: give either"):
        ClassBalancedLoss(COUNTS, BETA, weights=[1.0] * 4)
    with pytest.raises(ValueError, match=r"^beta: required"):
        ClassBalancedLoss(COUNTS)
    with pytest.raises(ValueError, match=r"^beta: must be in"):
        ClassBalancedLoss(COUNTS, 1.5)
    with pytest.raises(ValueError, match=r"^loss: must be one of"):
        ClassBalancedLoss(COUNTS, BETA, loss="hinge")
    with pytest.raises(ValueError, match="argument `reduction`"):  # Keras' own reductions, Keras' own error
        ClassBalancedLoss(COUNTS, BETA, reduction="weighted_mean")


def test_keras_reductions_and_sample_weight():
    """call() gives the core's per-position losses; Keras applies sample_weight, then its reduction."""
    logits, labels = _batch()
    w = cbloss.class_balanced_weights(COUNTS, BETA)
    per = cbloss.class_balanced_loss(logits.astype(np.float64), labels, w, loss="softmax_focal", reduction="none")
    sw = np.linspace(0.0, 2.0, len(labels))
    expected = {
        "sum_over_batch_size": per.mean(),
        "sum": per.sum(),
        "mean_with_sample_weight": None,
        "none": per,
    }
    for reduction, value in expected.items():
        loss = ClassBalancedLoss(COUNTS, BETA, loss="softmax_focal", reduction=reduction)
        np.testing.assert_allclose(loss(labels, logits).numpy(), value if value is not None else per.mean(), rtol=1e-5)
        weighted = {
            "sum_over_batch_size": (sw * per).mean(),
            "sum": (sw * per).sum(),
            "mean_with_sample_weight": (sw * per).sum() / sw.sum(),
            "none": sw * per,
        }[reduction]
        np.testing.assert_allclose(loss(labels, logits, sample_weight=sw).numpy(), weighted, rtol=1e-5)
    # hard labels with a trailing size-1 axis (as Keras datasets give them), and one-hot targets
    loss = ClassBalancedLoss(COUNTS, BETA, loss="softmax_focal")
    np.testing.assert_allclose(loss(labels[:, None], logits).numpy(), per.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss(np.eye(4)[labels], logits).numpy(), per.mean(), rtol=1e-5)


def test_ignore_index_is_masked_out_of_the_mean():
    logits, labels = _batch(n=10, seed=1)
    labels[::3] = -1
    w = cbloss.class_balanced_weights(COUNTS, BETA)
    expected = cbloss.class_balanced_loss(logits.astype(np.float64), labels, w, reduction="mean", ignore_index=-1)
    loss = ClassBalancedLoss(COUNTS, BETA, ignore_index=-1)
    np.testing.assert_allclose(loss(labels, logits).numpy(), expected, rtol=1e-5)
    graph = tf.function(lambda y, z: loss(y, z))
    np.testing.assert_allclose(graph(tf.constant(labels), tf.constant(logits)).numpy(), expected, rtol=1e-5)


def test_eager_call_validates_labels():
    logits, labels = _batch()
    labels[0] = 9
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 4\)"):
        ClassBalancedLoss(COUNTS, BETA)(labels, logits)


def _model(c=4, d=3, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(c)])


def test_compile_fit_save_load(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ rng.normal(size=(3, 4))).argmax(-1)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=ClassBalancedLoss(COUNTS, BETA, loss="focal"))
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, ClassBalancedLoss)
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)  # trains on with the restored loss


def test_mixed_precision_policy_computes_in_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        model.compile(optimizer="sgd", loss=ClassBalancedLoss(COUNTS, BETA))
        x, y = np.ones((8, 3), np.float32), np.arange(8) % 4
        assert model(x).dtype == "float16"
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        loss = ClassBalancedLoss(COUNTS, BETA, dtype="float16")  # even a float16 Keras loss computes in float32
        value = loss(y, tf.constant(np.full((8, 4), 0.3), tf.float16))
        assert np.isfinite(float(value))
    finally:
        keras.mixed_precision.set_global_policy(previous)


# ----------------------------------------------------------------------------------------------------------
# tf.distribute
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def _strategy():
    """One MirroredStrategy for the whole process (two strategies over the same devices reuse collective
    instance keys, and TensorFlow then aborts when their dtypes differ)."""
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "tests/tensorflow/conftest.py configures two logical CPUs before TensorFlow starts"
    return tf.distribute.MirroredStrategy([cpus[0].name, cpus[1].name])


def test_mirrored_strategy_keras_step_equals_single_device():
    """One SGD step of model.fit on two replicas moves the weights as one device on the whole batch, and as
    the core's gradient says (dW = x^T dL/dz for a Dense layer)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=16)

    def one_step(strategy):
        with strategy.scope():
            model = _model()
            model.compile(optimizer=keras.optimizers.SGD(1.0), loss=ClassBalancedLoss(COUNTS, BETA, loss="focal"))
        kernel, bias = (v.numpy() for v in model.weights)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return (kernel, bias), [v.numpy() for v in model.weights]

    (kernel, bias), single = one_step(tf.distribute.get_strategy())
    _, mirrored = one_step(_strategy())
    for a, b in zip(mirrored, single, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    z = x.astype(np.float64) @ kernel + bias
    w = cbloss.class_balanced_weights(COUNTS, BETA)
    _, dz = cbloss.class_balanced_loss_and_grad(z, y, w, loss="focal", reduction="mean")
    np.testing.assert_allclose(single[0], kernel - x.T @ dz, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single[1], bias - dz.sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
def test_mirrored_strategy_function_uses_the_global_denominator(reduction):
    """In strategy.run, the mean divides by the denominator of the whole batch: the summed replica gradients
    are the single-device gradient even when the replicas count different numbers of positions."""
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(8, 5))
    labels = rng.integers(0, 5, size=8)
    labels[:3] = -1  # the first replica ignores 3 of its 4 positions, the second none
    weights = rng.uniform(0.5, 2.0, size=5)
    options = dict(loss="softmax", reduction=reduction, ignore_index=-1)
    _, expected = cbloss.class_balanced_loss_and_grad(logits, labels, weights, **options)
    strategy = _strategy()
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: (
            tf.constant(logits[4 * ctx.replica_id_in_sync_group : 4 * ctx.replica_id_in_sync_group + 4]),
            tf.constant(labels[4 * ctx.replica_id_in_sync_group : 4 * ctx.replica_id_in_sync_group + 4]),
        )
    )

    def gradients(cross_replica):
        @tf.function
        def step(z, y):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = class_balanced_loss(z, y, weights, cross_replica=cross_replica, **options)
            return tape.gradient(loss, z)

        per_replica = strategy.run(step, args=halves)
        return np.concatenate([g.numpy() for g in strategy.experimental_local_results(per_replica)])

    np.testing.assert_allclose(gradients(True), expected, rtol=1e-12, atol=1e-15)
    assert not np.allclose(gradients(False), expected)  # a per-replica mean is a different gradient


def test_weights_from_a_variable_and_checked_options():
    weights = [0.5, 1.0, 2.0, 4.0]
    loss = ClassBalancedLoss(weights=tf.Variable(weights), loss="sigmoid")
    np.testing.assert_array_equal(loss.class_weights, weights)
    assert loss.get_config()["weights"] == weights and loss.get_config()["loss"] == "sigmoid"
    logits, labels = _batch()
    expected = cbloss.class_balanced_loss(logits.astype(np.float64), labels, weights, loss="sigmoid")
    np.testing.assert_allclose(loss(labels, logits).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"^samples_per_class: required with beta"):
        ClassBalancedLoss(beta=BETA)
    with pytest.raises(TypeError, match=r"^reductions: unknown option"):
        ClassBalancedLoss(COUNTS, BETA, reductions="mean")
    with pytest.raises(ValueError, match=r"^normalize: must be one of"):
        ClassBalancedLoss(COUNTS, BETA, normalize="batch")
    with pytest.raises(ValueError, match=r"^gamma: only the focal losses"):
        ClassBalancedLoss(COUNTS, BETA, gamma=1.0)


def test_unweighted_loss_with_an_unknown_batch_dimension():
    """Keras traces its steps with the batch dimension unknown; an unweighted loss on class indices works there."""
    logits, labels = _batch(n=10, seed=5)
    loss = ClassBalancedLoss(loss="focal")
    graph = tf.function(
        lambda y, z: loss(y, z), input_signature=[tf.TensorSpec([None, 1]), tf.TensorSpec([None, 4], tf.float32)]
    )
    expected = cbloss.class_balanced_loss(logits.astype(np.float64), labels, loss="focal")
    np.testing.assert_allclose(graph(labels[:, None].astype(np.float32), logits).numpy(), expected, rtol=1e-5)


def test_multi_hot_targets_and_a_count_mismatch():
    logits, _ = _batch(seed=6)
    targets = (np.random.default_rng(7).uniform(size=logits.shape) < 0.5).astype(np.float32)
    loss = ClassBalancedLoss(COUNTS, BETA, loss="focal", multi_label="sample")
    assert ClassBalancedLoss.from_config(loss.get_config()).get_config()["multi_label"] == "sample"
    w = cbloss.class_balanced_weights(COUNTS, BETA)
    per = cbloss.class_balanced_loss(
        logits.astype(np.float64), targets, w, loss="focal", multi_label="sample", reduction="none"
    )
    np.testing.assert_allclose(loss(targets, logits).numpy(), per.mean(), rtol=1e-5)
    with pytest.raises(
        ValueError, match=r"^samples_per_class: 4 class counts were given, but the logits' class axis \(1\) has 5"
    ):
        ClassBalancedLoss(COUNTS, BETA)(np.zeros(3), np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("bad", [2.7, -0.5, float("nan")])
def test_non_integral_float_labels_are_an_error_never_truncated(bad):
    loss = ClassBalancedLoss([5, 3, 2], 0.9)
    y_pred = tf.zeros((3, 3))
    np.testing.assert_allclose(
        float(loss(tf.constant([0.0, 2.0, 1.0]), y_pred)), float(loss(tf.constant([0, 2, 1]), y_pred))
    )
    with pytest.raises(ValueError, match=r"^labels: class indices must be integers"):
        loss(tf.constant([0.0, bad, 1.0]), y_pred)
    strict = ClassBalancedLoss([5, 3, 2], 0.9, validate=True)
    traced = tf.function(lambda y: strict(y, y_pred))
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels: class indices must be integers"):
        traced(tf.constant([0.0, bad, 1.0]))


def test_validate_gives_the_losss_own_message_in_a_graph_and_round_trips():
    loss = ClassBalancedLoss([5, 3, 2], 0.9, validate=True)
    traced = tf.function(lambda y: loss(y, tf.zeros((2, 3))))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels: class indices must be in \[0, 3\)"):
        traced(tf.constant([0.0, 3.0]))
    assert ClassBalancedLoss.from_config(loss.get_config()).validate is True
    with pytest.raises(ValueError, match=r"^validate"):
        ClassBalancedLoss([5, 3, 2], 0.9, validate="yes")
