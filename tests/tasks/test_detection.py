import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from scipy.optimize import linear_sum_assignment

from scenic_eqx import loops
from scenic_eqx.tasks import DetectionTask, create_task, scored_boxes

NUM_CLASSES, QUERIES, MAX_BOXES = 3, 6, 4
COEFS = {"class": 1.0, "bbox": 5.0, "giou": 2.0}

_loss = jax.jit(lambda task, o, b: task.loss(o, b))
_metrics = jax.jit(lambda task, o, b: task.metrics(o, b))


def _xyxy(b):
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def _giou(a, b):
    """Pairwise GIoU of xyxy boxes [n,4] x [m,4], in float64."""
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    union = area(a)[:, None] + area(b)[None] - inter
    hull = np.prod(
        np.maximum(a[:, None, 2:], b[None, :, 2:]) - np.minimum(a[:, None, :2], b[None, :, :2]), -1
    )
    return inter / union - (hull - union) / hull


def _reference_terms(logits, boxes, label, batch_mask, eos_coef=0.1):
    """DETR's loss terms for one prediction set, image by image with scipy, in float64."""
    logits, boxes = np.asarray(logits, np.float64), np.asarray(boxes, np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ce_sum = w_sum = l1_sum = giou_sum = num_boxes = 0.0
    for i in range(len(logits)):
        if batch_mask[i] == 0:
            continue
        real = np.flatnonzero(label["box_mask"][i])
        t_boxes = np.asarray(label["boxes"][i][real], np.float64)
        t_labels = np.asarray(label["labels"][i][real])
        classes = np.full(QUERIES, NUM_CLASSES)
        if len(real):
            l1 = np.abs(boxes[i][:, None] - t_boxes[None]).sum(-1)
            giou = _giou(_xyxy(boxes[i]), _xyxy(t_boxes))
            cost = COEFS["bbox"] * l1 - COEFS["class"] * probs[i][:, t_labels] - COEFS["giou"] * giou
            rows, cols = linear_sum_assignment(cost)
            classes[rows] = t_labels[cols]
            l1_sum += l1[rows, cols].sum()
            giou_sum += (1 - giou[rows, cols]).sum()
            num_boxes += len(real)
        weights = np.where(classes == NUM_CLASSES, eos_coef, 1.0)
        ce = -np.log(probs[i][np.arange(QUERIES), classes])
        ce_sum += (weights * ce).sum()
        w_sum += weights.sum()
    return ce_sum / w_sum, l1_sum / max(num_boxes, 1), giou_sum / max(num_boxes, 1)


def _reference_loss(outputs, label, batch_mask, aux=True):
    sets = [(outputs["pred_logits"], outputs["pred_boxes"])]
    if aux:
        layers = outputs["aux_pred_logits"].shape[1]
        sets += [(outputs["aux_pred_logits"][:, j], outputs["aux_pred_boxes"][:, j]) for j in range(layers)]
    total = 0.0
    for logits, boxes in sets:
        ce, l1, giou = _reference_terms(logits, boxes, label, batch_mask)
        total += COEFS["class"] * ce + COEFS["bbox"] * l1 + COEFS["giou"] * giou
    return total


def _random_batch(rng, batch_size, aux_layers=2):
    def boxes(*shape):
        centre = rng.uniform(0.2, 0.8, size=(*shape, 2))
        size = rng.uniform(0.05, 0.4, size=(*shape, 2))
        return np.concatenate([centre, size], -1).astype(np.float32)

    outputs = {
        "pred_logits": rng.normal(size=(batch_size, QUERIES, NUM_CLASSES + 1)).astype(np.float32),
        "pred_boxes": boxes(batch_size, QUERIES),
        "aux_pred_logits": rng.normal(size=(batch_size, aux_layers, QUERIES, NUM_CLASSES + 1)).astype(
            np.float32
        ),
        "aux_pred_boxes": boxes(batch_size, aux_layers, QUERIES),
    }
    num_real = rng.integers(0, MAX_BOXES + 1, size=batch_size)
    num_real[0] = MAX_BOXES
    box_mask = (np.arange(MAX_BOXES)[None] < num_real[:, None]).astype(np.float32)
    label = {
        # Padded boxes hold garbage: the mask alone must keep them out.
        "boxes": boxes(batch_size, MAX_BOXES),
        "labels": rng.integers(0, NUM_CLASSES, size=(batch_size, MAX_BOXES)).astype(np.int32),
        "box_mask": box_mask,
    }
    return outputs, label


@pytest.mark.parametrize("matcher", ["auto", "hungarian", "hungarian_jax"])
def test_loss_matches_a_scipy_reference_with_padding(matcher):
    rng = np.random.default_rng(0)
    outputs, label = _random_batch(rng, 8)
    mask = np.ones(8, np.float32)
    mask[-2:] = 0.0
    task = DetectionTask(matcher=matcher)
    loss = _loss(task, outputs, {"label": label, "batch_mask": mask})
    np.testing.assert_allclose(loss, _reference_loss(outputs, label, mask), rtol=1e-5)
    # Without the auxiliary sets, only the final predictions count.
    no_aux = _loss(
        DetectionTask(matcher=matcher, aux_loss=False), outputs, {"label": label, "batch_mask": mask}
    )
    np.testing.assert_allclose(no_aux, _reference_loss(outputs, label, mask, aux=False), rtol=1e-5)


def test_the_default_matcher_is_the_exact_one_faster_on_this_backend():
    from scenic_eqx.tasks import _detection, hungarian_jax_matcher, hungarian_matcher

    assert DetectionTask().matcher == "auto"
    expected = hungarian_matcher if jax.default_backend() == "cpu" else hungarian_jax_matcher
    assert _detection._best_exact_matcher() is expected


def test_metrics_are_exact_sums_whatever_the_split():
    rng = np.random.default_rng(1)
    outputs, label = _random_batch(rng, 8)
    task = DetectionTask()
    whole = jax.device_get(_metrics(task, outputs, {"label": label}))
    halves = [
        jax.device_get(_metrics(task, *jax.tree.map(lambda x: x[s], (outputs, {"label": label}))))
        for s in (slice(0, 3), slice(3, 8))
    ]
    summed = jax.tree.map(lambda a, b: a + b, *halves)
    for name in ("loss_class", "loss_bbox", "loss_giou", "class_error"):
        np.testing.assert_allclose(summed[name], whole[name], rtol=1e-5)
    summary = task.summarize(whole)
    ce, l1, giou = _reference_terms(outputs["pred_logits"], outputs["pred_boxes"], label, np.ones(8))
    np.testing.assert_allclose(
        [summary["loss_class"], summary["loss_bbox"], summary["loss_giou"]], [ce, l1, giou], rtol=1e-5
    )
    np.testing.assert_allclose(summary["loss"], ce + 5 * l1 + 2 * giou, rtol=1e-5)


def test_box_normaliser_is_the_global_count_on_a_sharded_batch():
    # Images with very different box counts: a per-device normaliser would weigh the
    # boxes of box-poor devices more, and differ from the reference.
    rng = np.random.default_rng(2)
    outputs, label = _random_batch(rng, 8)
    label["box_mask"][:4] = 1.0
    label["box_mask"][4:, 1:] = 0.0
    batch = {"label": label}
    sharding = NamedSharding(loops.data_mesh(), PartitionSpec("data"))
    sharded = jax.device_put((outputs, batch), sharding)
    task = DetectionTask()
    loss = _loss(task, *sharded)
    assert len(jax.devices()) == 8
    np.testing.assert_allclose(loss, _loss(task, outputs, batch), rtol=1e-6)
    np.testing.assert_allclose(loss, _reference_loss(outputs, label, np.ones(8)), rtol=1e-5)


def test_perfect_predictions_have_zero_box_losses_and_no_class_error():
    rng = np.random.default_rng(3)
    outputs, label = _random_batch(rng, 4)
    # Query j predicts box j exactly, with its class; the rest predict "no object".
    classes = np.where(label["box_mask"] > 0, label["labels"], NUM_CLASSES)
    classes = np.concatenate([classes, np.full((4, QUERIES - MAX_BOXES), NUM_CLASSES)], 1)
    outputs["pred_logits"] = 20.0 * np.eye(NUM_CLASSES + 1, dtype=np.float32)[classes]
    outputs["pred_boxes"][:, :MAX_BOXES] = label["boxes"]
    summary = DetectionTask().summarize(jax.device_get(_metrics(DetectionTask(), outputs, {"label": label})))
    assert summary["loss_bbox"] == pytest.approx(0.0, abs=1e-6)
    assert summary["loss_giou"] == pytest.approx(0.0, abs=1e-6)
    assert summary["class_error"] == 0.0
    assert summary["loss_class"] < 1e-6


def test_loss_is_invariant_to_the_order_of_targets_and_queries():
    rng = np.random.default_rng(4)
    outputs, label = _random_batch(rng, 4, aux_layers=1)
    task = DetectionTask()
    loss = _loss(task, outputs, {"label": label})
    targets = rng.permutation(MAX_BOXES)
    queries = rng.permutation(QUERIES)
    shuffled_label = jax.tree.map(lambda x: x[:, targets], label)
    shuffled_outputs = {
        "pred_logits": outputs["pred_logits"][:, queries],
        "pred_boxes": outputs["pred_boxes"][:, queries],
        "aux_pred_logits": outputs["aux_pred_logits"][:, :, queries],
        "aux_pred_boxes": outputs["aux_pred_boxes"][:, :, queries],
    }
    np.testing.assert_allclose(_loss(task, shuffled_outputs, {"label": shuffled_label}), loss, rtol=1e-5)


@pytest.mark.parametrize("matcher", ["hungarian", "hungarian_jax", "greedy", "sinkhorn"])
def test_gradients_are_finite_with_every_matcher(matcher):
    rng = np.random.default_rng(5)
    outputs, label = _random_batch(rng, 4)
    outputs["pred_boxes"][0, 0, 2:] = 0.0  # a degenerate (zero-size) box
    grads = jax.jit(jax.grad(lambda o: DetectionTask(matcher=matcher).loss(o, {"label": label})))(outputs)
    for name, grad in grads.items():
        assert np.all(np.isfinite(grad)), name
        assert np.any(grad != 0), name


def test_scored_boxes_takes_the_best_object_class():
    logits = jnp.log(jnp.array([[[0.1, 0.6, 0.3], [0.2, 0.1, 0.7]]]))
    boxes = jnp.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]])
    out = scored_boxes(logits, boxes)
    np.testing.assert_allclose(out["scores"], [[0.6, 0.2]], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [[1, 0]])
    np.testing.assert_allclose(out["boxes"], [[[0.4, 0.3, 0.6, 0.7], [0.0, 0.5, 0.5, 1.0]]], atol=1e-7)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`matcher`.*'hungarain'"):
        DetectionTask(matcher="hungarain")
    with pytest.raises(ValueError, match="`eos_coef`"):
        DetectionTask(eos_coef=-1.0)
    outputs, label = _random_batch(np.random.default_rng(6), 2)
    with pytest.raises(ValueError, match="box_mask"):
        DetectionTask().loss(outputs, {"label": {"boxes": label["boxes"], "labels": label["labels"]}})
    with pytest.raises(ValueError, match="boxes"):
        DetectionTask().loss(outputs, {"label": {**label, "boxes": label["boxes"][:, :, :2]}})
    with pytest.raises(ValueError, match="box_mask"):
        DetectionTask().loss(outputs, {"label": {**label, "box_mask": label["box_mask"][:, :1]}})
    # A real box of class 3 with 3 classes is an error; a padded one is not.
    bad = {**label, "labels": label["labels"].copy()}
    bad["labels"][0, 0] = NUM_CLASSES
    match = (
        r'`batch\["label"\]\["labels"\]` must hold class indices in \[0, 3\) \(`num_classes` = 3, '
        r".*\) for real boxes .* Received: 1 value\(s\) outside it, from 3 to 3"
    )
    with pytest.raises(Exception, match=match):
        _loss(DetectionTask(), outputs, {"label": bad})
    bad["box_mask"] = label["box_mask"].copy()
    bad["box_mask"][0, 0] = 0.0
    assert np.isfinite(_loss(DetectionTask(), outputs, {"label": bad}))


def test_registered_by_name():
    task = create_task("detection", eos_coef=0.2, matcher="greedy")
    assert isinstance(task, DetectionTask) and task.eos_coef == 0.2
    assert isinstance(eqx.filter_jit(lambda t: t)(task), DetectionTask)


@pytest.mark.parametrize("max_boxes", [0, 3], ids=["no_box_slots", "all_padded"])
@pytest.mark.parametrize("matcher", ["hungarian", "hungarian_jax", "greedy", "sinkhorn"])
def test_images_without_targets_learn_no_object_everywhere(matcher, max_boxes):
    outputs, _ = _random_batch(np.random.default_rng(7), 2)
    label = {
        "boxes": np.full((2, max_boxes, 4), 0.5, np.float32),
        "labels": np.zeros((2, max_boxes), np.int32),
        "box_mask": np.zeros((2, max_boxes), np.float32),
    }
    task = DetectionTask(matcher=matcher)
    loss, grads = jax.jit(jax.value_and_grad(lambda o: task.loss(o, {"label": label})))(outputs)
    # Every query is "no object", all weighted eos_coef: the class loss is the mean
    # cross-entropy against the last class; the box losses are 0.
    expected = 0.0
    for logits in [outputs["pred_logits"], *np.moveaxis(outputs["aux_pred_logits"], 1, 0)]:
        expected += -np.mean(jax.nn.log_softmax(logits, axis=-1)[..., -1])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    metrics = _metrics(task, outputs, {"label": label})
    assert np.isfinite(metrics["loss_class"][0]) and float(metrics["loss_bbox"][1]) == 0.0
    # Summarised as the loss is computed: no box, no box loss (not 0/0).
    results = task.summarize(jax.device_get(metrics))
    assert results["loss_bbox"] == results["loss_giou"] == 0.0
    no_object = -np.mean(jax.nn.log_softmax(outputs["pred_logits"])[..., -1])
    assert results["loss"] == pytest.approx(float(no_object), rel=1e-5)


def _focal_reference(logits, boxes, label, alpha=0.25, gamma=2.0):
    """Deformable DETR's focal class loss and box terms for one set, with scipy, in float64."""
    x = np.asarray(logits, np.float64)[..., :-1]  # the "no object" logit is unused
    p = 1 / (1 + np.exp(-x))
    positive = alpha * (1 - p) ** gamma * -np.log(p)
    negative = (1 - alpha) * p**gamma * -np.log(1 - p)
    class_sum = l1_sum = giou_sum = num_boxes = 0.0
    for i in range(len(x)):
        real = np.flatnonzero(label["box_mask"][i])
        t_boxes = np.asarray(label["boxes"][i][real], np.float64)
        t_labels = np.asarray(label["labels"][i][real])
        targets = np.zeros_like(x[i])
        if len(real):
            b = np.asarray(boxes[i], np.float64)
            l1 = np.abs(b[:, None] - t_boxes[None]).sum(-1)
            giou = _giou(_xyxy(b), _xyxy(t_boxes))
            class_cost = (positive[i] - negative[i])[:, t_labels]
            cost = COEFS["bbox"] * l1 + 2.0 * class_cost - COEFS["giou"] * giou
            rows, cols = linear_sum_assignment(cost)
            targets[rows, t_labels[cols]] = 1.0
            l1_sum += l1[rows, cols].sum()
            giou_sum += (1 - giou[rows, cols]).sum()
            num_boxes += len(real)
        class_sum += np.where(targets > 0, positive[i], negative[i]).sum()
    num_boxes = max(num_boxes, 1)
    return class_sum / num_boxes, l1_sum / num_boxes, giou_sum / num_boxes


def test_focal_classification_loss_matches_a_scipy_reference():
    rng = np.random.default_rng(8)
    outputs, label = _random_batch(rng, 4, aux_layers=1)
    task = DetectionTask(classification_loss="focal", class_loss_coef=2.0, matcher="hungarian")
    expected = 0.0
    sets = [(outputs["pred_logits"], outputs["pred_boxes"])]
    sets.append((outputs["aux_pred_logits"][:, 0], outputs["aux_pred_boxes"][:, 0]))
    for logits, boxes in sets:
        focal, l1, giou = _focal_reference(logits, boxes, label)
        expected += 2.0 * focal + COEFS["bbox"] * l1 + COEFS["giou"] * giou
    np.testing.assert_allclose(_loss(task, outputs, {"label": label}), expected, rtol=1e-5)
    summary = task.summarize(jax.device_get(_metrics(task, outputs, {"label": label})))
    focal, l1, giou = _focal_reference(outputs["pred_logits"], outputs["pred_boxes"], label)
    np.testing.assert_allclose([summary["loss_class"], summary["loss_bbox"]], [focal, l1], rtol=1e-5)
    assert summary["loss"] == pytest.approx(2.0 * focal + 5.0 * l1 + 2.0 * giou, rel=1e-5)
    # Scores for COCO AP are the sigmoid probabilities of the object classes.
    batch = {"label": label, "inputs": np.zeros((4, 8, 8, 3), np.float32)}
    scores = jax.jit(lambda t, o, b: t.evaluator_inputs(o, b))(task, outputs, batch)
    expected_scores = jax.nn.sigmoid(outputs["pred_logits"][..., :-1]).max(-1)
    np.testing.assert_allclose(scores["scores"], expected_scores, rtol=1e-6)


def test_scored_boxes_with_sigmoid_scores():
    logits = jnp.array([[[math.log(3), 0.0, 5.0], [-math.log(3), -math.log(4), 9.0]]])
    boxes = jnp.full((1, 2, 4), 0.5)
    out = scored_boxes(logits, boxes, activation="sigmoid")
    # Sigmoids of the object logits [3/4, 1/2] and [1/4, 1/5]; the last logit is unused.
    np.testing.assert_allclose(out["scores"], [[0.75, 0.25]], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [[0, 0]])
    with pytest.raises(ValueError, match=r"`activation` must be 'softmax' or 'sigmoid'. Received: 'relu'."):
        scored_boxes(logits, boxes, activation="relu")


def test_bad_focal_options_are_named():
    with pytest.raises(
        ValueError, match=r"`classification_loss` must be one of 'softmax', 'focal'. Received: 'sigmoid'."
    ):
        DetectionTask(classification_loss="sigmoid")
    with pytest.raises(
        ValueError,
        match=r"`focal_alpha` must be None \(no balancing\) or a number in \[0, 1\]. Received: 1.5.",
    ):
        DetectionTask(focal_alpha=1.5)
    with pytest.raises(ValueError, match=r"`focal_gamma` must be a finite number >= 0. Received: -2.0."):
        DetectionTask(focal_gamma=-2)
