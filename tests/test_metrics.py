import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from segjax import metrics


def _reference_cm(pred, labels, num_classes, mask=None):
    cm = np.zeros((num_classes, num_classes), np.int64)
    for n, h, w in np.ndindex(labels.shape):
        if mask is not None and not mask[n]:
            continue
        if 0 <= labels[n, h, w] < num_classes:
            cm[labels[n, h, w], pred[n, h, w]] += 1
    return cm


def test_confusion_matrix_hand_built():
    labels = np.array([[[0, 0, 1], [2, 2, 255]]])
    pred = np.array([[[0, 1, 1], [2, 0, 2]]])
    want = np.array(
        [
            [1, 1, 0],  # gt 0: once right, once predicted as 1
            [0, 1, 0],
            [1, 0, 1],  # gt 2: once right, once predicted as 0; the 255 pixel is dropped
        ]
    )
    got = metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(labels), 3)
    assert got.dtype == jnp.int32 and got.shape == (3, 3)
    np.testing.assert_array_equal(got, want)


def test_confusion_matrix_drops_ignore_and_out_of_range_labels():
    labels = np.array([[[0, 19, 254], [255, 18, -1]]])
    pred = np.array([[[0, 18, 18], [0, 18, 3]]])
    got = np.asarray(metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(labels), 19))
    want = np.zeros((19, 19), np.int64)
    want[0, 0] = want[18, 18] = 1
    np.testing.assert_array_equal(got, want)


def test_confusion_matrix_ignore_label_inside_class_range():
    labels = np.array([[[0, 1, 2, 2]]])
    pred = np.array([[[0, 1, 0, 2]]])
    got = metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(labels), 3, ignore_label=2)
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_confusion_matrix_mask_drops_whole_examples():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (3, 5, 6))
    pred = rng.integers(0, 4, (3, 5, 6))
    mask = np.array([True, False, True])
    got = metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(labels), 4, mask=mask)
    np.testing.assert_array_equal(got, _reference_cm(pred, labels, 4, mask))
    assert int(got.sum()) == 2 * 5 * 6


def test_confusion_matrix_sharded_matches_unsharded():
    rng = np.random.default_rng(1)
    num_classes = 19
    shape = (8, 24, 32)
    labels = rng.integers(0, num_classes, shape)
    labels = np.where(rng.random(shape) < 0.2, 255, labels).astype(np.int32)
    pred = rng.integers(0, num_classes, shape).astype(np.int32)
    mask = np.array([True] * 6 + [False] * 2)
    fn = jax.jit(lambda p, y, m: metrics.confusion_matrix(p, y, num_classes, mask=m))
    want = fn(jnp.asarray(pred), jnp.asarray(labels), jnp.asarray(mask))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    assert mesh.size == 8
    sharding = NamedSharding(mesh, P("data"))
    sharded = [jax.device_put(x, sharding) for x in (pred, labels, mask)]
    got = fn(*sharded)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, _reference_cm(pred, labels, num_classes, mask))


def test_compute_iou_hand_computed_3x3():
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    result = metrics.compute_iou(cm)
    want_iou = [5 / (6 + 7 - 5), 3 / (6 + 4 - 3), 4 / (4 + 5 - 4)]
    np.testing.assert_allclose(result["iou"], want_iou)
    assert result["iou"].dtype == np.float64
    np.testing.assert_allclose(result["miou"], np.mean(want_iou))
    np.testing.assert_allclose(result["pixel_acc"], 12 / 16)
    np.testing.assert_allclose(result["mean_acc"], np.mean([5 / 6, 3 / 6, 4 / 4]))


def test_compute_iou_absent_class_is_nan_and_excluded():
    cm = np.array([[4, 0, 0], [0, 0, 0], [1, 0, 3]])
    result = metrics.compute_iou(cm)
    assert np.isnan(result["iou"][1]) and np.isnan(result["acc"][1])
    np.testing.assert_allclose(result["miou"], np.mean([4 / 5, 3 / 4]))
    np.testing.assert_allclose(result["mean_acc"], np.mean([1.0, 3 / 4]))


def test_compute_iou_class_only_predicted_counts_as_zero():
    cm = np.array([[4, 2, 0], [0, 0, 0], [0, 0, 3]])
    result = metrics.compute_iou(cm)
    assert result["iou"][1] == 0.0
    np.testing.assert_allclose(result["miou"], np.mean([4 / 6, 0.0, 1.0]))
    assert np.isnan(result["acc"][1])
    np.testing.assert_allclose(result["mean_acc"], np.mean([4 / 6, 1.0]))


def test_compute_iou_empty_matrix_is_nan_without_warning():
    with np.errstate(all="raise"):
        result = metrics.compute_iou(np.zeros((2, 2), np.int64))
    assert np.isnan(result["miou"]) and np.isnan(result["pixel_acc"])


def test_accumulator_flushes_before_int32_limit_and_sums_exactly():
    rng = np.random.default_rng(2)
    acc = metrics.ConfusionAccumulator(4, max_count=100)
    direct = np.zeros((4, 4), np.int64)
    for _ in range(5):
        labels = rng.integers(0, 4, (1, 5, 8))
        pred = rng.integers(0, 4, (1, 5, 8))
        cm = metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(labels), 4)
        acc.add(cm, num_pixels=labels.size)
        direct += _reference_cm(pred, labels, 4)
    # 40 pixels a batch against a limit of 100: flush before batches 3 and 5.
    assert acc.num_flushes == 2
    result = acc.result()
    assert acc.num_flushes == 3
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, direct)
    np.testing.assert_array_equal(acc.result(), direct)


def test_accumulator_default_limit_is_int32_and_empty_result_is_zero():
    acc = metrics.ConfusionAccumulator(3)
    assert acc.max_count == 2**31 - 1
    np.testing.assert_array_equal(acc.result(), np.zeros((3, 3), np.int64))
    cm = jnp.ones((3, 3), jnp.int32)
    acc.add(cm, num_pixels=2**31 - 10)
    acc.add(cm, num_pixels=9)
    assert acc.num_flushes == 0
    acc.add(cm, num_pixels=1)
    assert acc.num_flushes == 1
    with pytest.raises(ValueError):
        acc.add(cm, num_pixels=2**31)


def test_format_table_and_metrics_to_dict():
    cm = np.array([[4, 0, 0], [0, 0, 0], [1, 0, 3]])
    result = metrics.compute_iou(cm)
    names = ["road", "sky", "car"]
    table = metrics.format_table(result, names)
    lines = table.splitlines()
    assert len(lines) == 5
    assert lines[1].split() == ["road", "80.00", "100.00"]
    assert lines[2].split() == ["sky", "n/a", "n/a"]
    assert lines[-1].startswith("mIoU 77.50")
    flat = metrics.metrics_to_dict(result, names)
    assert set(flat) == {"iou/road", "iou/sky", "iou/car", "miou", "pixel_acc", "mean_acc"}
    assert flat["iou/sky"] is None
    assert flat["iou/car"] == pytest.approx(0.75)
    assert flat["miou"] == pytest.approx(0.775)
    assert json.loads(json.dumps(flat)) == flat
    with pytest.raises(ValueError):
        metrics.format_table(result, names[:2])
