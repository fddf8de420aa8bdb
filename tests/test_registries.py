"""`nn.register`, `tasks.register` and `data.register`: user entries found by name, and their errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import data, nn, tasks
from scenic_eqx.data import _registry as data_registry
from scenic_eqx.nn import _registry as nn_registry
from scenic_eqx.tasks import _registry as tasks_registry


@pytest.fixture(autouse=True)
def restored_registries(monkeypatch):
    """Each test registers into copies of the registries, which the library's replace after."""
    monkeypatch.setattr(nn_registry, "_FAMILIES", dict(nn_registry._FAMILIES))
    monkeypatch.setattr(nn_registry, "_ALIASES", dict(nn_registry._ALIASES))
    monkeypatch.setattr(tasks_registry, "_TASKS", dict(tasks_registry._TASKS))
    monkeypatch.setattr(data_registry, "_DATASETS", dict(data_registry._DATASETS))


class Affine(eqx.Module):
    """`weight * mean(x) + offset`, one logit per class."""

    weight: jax.Array
    offset: jax.Array

    def __init__(self, num_classes: int, *, scale: float = 1.0, key):
        self.weight = scale * jax.random.normal(key, (num_classes,))
        self.offset = jnp.zeros(num_classes)

    def __call__(self, x, *, key=None):
        return self.weight * jnp.mean(x) + self.offset


class SumOfOutputs(tasks.AbstractTask):
    """Loss: the masked mean of the outputs' sums; metric `total`."""

    weight: float = 1.0

    def loss(self, outputs, batch):
        mask = batch["batch_mask"]
        return self.weight * jnp.sum(jnp.sum(outputs, axis=-1) * mask) / jnp.sum(mask)

    def metrics(self, outputs, batch):
        mask = batch["batch_mask"]
        return {"total": (jnp.sum(jnp.sum(outputs, axis=-1) * mask), jnp.sum(mask))}


def test_a_registered_model_class_is_created_by_name(getkey):
    assert nn.register("affine", scale=0.0)(Affine) is Affine  # the decorator form
    assert "affine" in nn.list_models()
    model = nn.create("affine", num_classes=3, key=getkey())
    assert isinstance(model, Affine) and jnp.array_equal(model.weight, jnp.zeros(3))  # the variant's scale
    model = nn.create("affine", num_classes=3, scale=2.0, key=getkey())  # an override
    assert model.weight.shape == (3,) and jnp.any(model.weight != 0)


def test_a_registered_model_function_and_its_overrides(getkey):
    @nn.register("affine_builder")
    def affine_builder(*, num_classes, key, **kwargs):
        return Affine(num_classes, key=key, **kwargs)

    assert affine_builder.__name__ == "affine_builder"  # the function itself is kept
    model = nn.create("affine_builder", num_classes=2, scale=0.0, key=getkey())
    assert jnp.array_equal(model.weight, jnp.zeros(2))


def test_model_registry_errors(without_annotation_checks):
    nn.register("affine", Affine)
    with pytest.raises(ValueError, match=r"already registered as 'affine' \(Affine\); pass `overwrite=True`"):
        nn.register("affine", Affine)
    with pytest.raises(ValueError, match=r"already registered as 'vit_ti16'"):
        nn.register("vit_ti16")  # as a decorator, refused before decorating
    nn.register("affine", Affine, overwrite=True, scale=3.0)
    assert nn_registry._lookup("affine") == (Affine, {"scale": 3.0})
    with pytest.raises(
        ValueError, match=r"`constructor` of model 'n' must be callable.* Received: 3 of type int"
    ):
        nn.register("n", 3)
    with pytest.raises(
        ValueError, match=r"must take the keyword arguments `num_classes` and `key`.* without 'key'"
    ):
        nn.register("no_key", lambda num_classes: None)
    with pytest.raises(ValueError, match=r"without 'depth'"):
        nn.register("affine_deep", Affine, depth=3)
    with pytest.raises(ValueError, match=r"`name` must be a non-empty string. Received: ''"):
        nn.register("", Affine)
    with pytest.raises(ValueError, match=r"Unknown model `name`. Did you mean 'affine'.* Received: 'afine'"):
        nn.create("afine", num_classes=2, key=jax.random.key(0))


def test_a_registered_task_is_created_by_name():
    assert tasks.register("sum_of_outputs", SumOfOutputs) is SumOfOutputs  # the call form
    assert "sum_of_outputs" in tasks.list_tasks()
    task = tasks.create_task("sum_of_outputs", weight=2.0)
    batch = {"batch_mask": jnp.array([1.0, 0.0])}
    outputs = jnp.array([[1.0, 2.0], [5.0, 5.0]])
    assert task.loss(outputs, batch) == 6.0  # 2 * (1 + 2): the padded example does not count
    with pytest.raises(ValueError, match=r"Task 'sum_of_outputs' takes the arguments: weight. .* 'wieght'"):
        tasks.create_task("sum_of_outputs", wieght=2.0)


def test_task_registry_errors(without_annotation_checks):
    @tasks.register("sum_of_outputs")
    class Decorated(SumOfOutputs):
        pass

    assert tasks_registry._TASKS["sum_of_outputs"] is Decorated
    with pytest.raises(
        ValueError, match=r"already registered as 'sum_of_outputs' \(Decorated\); pass `overwrite=True`"
    ):
        tasks.register("sum_of_outputs", SumOfOutputs)
    tasks.register("sum_of_outputs", SumOfOutputs, overwrite=True)
    assert tasks_registry._TASKS["sum_of_outputs"] is SumOfOutputs
    with pytest.raises(
        ValueError,
        match=r"`cls` of task 't' must be a subclass of `tasks.AbstractTask`. Received: 'x' of type str",
    ):
        tasks.register("t", "x")
    with pytest.raises(ValueError, match=r"must be a subclass of `tasks.AbstractTask`. Received: <function"):
        tasks.register("t", lambda: SumOfOutputs())

    class LossOnly(tasks.AbstractTask):
        def loss(self, outputs, batch):
            return jnp.sum(outputs)

    with pytest.raises(
        ValueError,
        match=r"must implement every abstract method .* LossOnly, which does not implement metrics",
    ):
        tasks.register("loss_only", LossOnly)
    with pytest.raises(ValueError, match=r"Did you mean 'sum_of_outputs'.* Received: 'sum_of_output'"):
        tasks.create_task("sum_of_output")


def _tiny_arrays(
    *, batch_size, eval_batch_size, shuffle_seed, process_index, process_count, num_examples: int = 12
):
    """`num_examples` 2x2x1 images whose label is 1 where the image is bright."""
    labels = np.arange(num_examples) % 2
    images = np.broadcast_to(labels[:, None, None, None], (num_examples, 2, 2, 1)).astype(np.float32)
    return data.from_arrays(
        (images, labels), (images[:5], labels[:5]), batch_size=batch_size, eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed, process_index=process_index, process_count=process_count,
    )  # fmt: skip


def test_a_registered_dataset_is_built_by_get_dataset():
    assert data.register("tiny_arrays")(_tiny_arrays) is _tiny_arrays
    assert "tiny_arrays" in data.list_datasets()
    dataset = data.get_dataset("tiny_arrays", batch_size=4, eval_batch_size=3, num_examples=8,
                               process_index=0, process_count=1)  # fmt: skip
    assert dataset.meta_data["num_train_examples"] == 8 and dataset.meta_data["num_classes"] == 2
    assert next(dataset.train_iter)["inputs"].shape == (4, 2, 2, 1)
    eval_masks = [batch["batch_mask"] for batch in dataset.test_iter]
    assert [len(m) for m in eval_masks] == [3, 3] and sum(m.sum() for m in eval_masks) == 5
    with pytest.raises(
        TypeError,
        match=r"Unknown option\(s\) num_exampels for `get_dataset` of 'tiny_arrays'; known: num_examples",
    ):
        data.get_dataset("tiny_arrays", batch_size=4, num_exampels=8)
    # The arguments `get_dataset` checks are checked for a registered builder too.
    with pytest.raises(ValueError, match=r"`batch_size` \(=0\) must be a positive integer"):
        data.get_dataset("tiny_arrays", batch_size=0)


def test_dataset_registry_errors(without_annotation_checks):
    data.register("tiny_arrays", _tiny_arrays)
    with pytest.raises(ValueError, match=r"already registered as 'tiny_arrays'; pass `overwrite=True`"):
        data.register("tiny_arrays", _tiny_arrays)
    with pytest.raises(ValueError, match=r"already registered as 'digits'"):
        data.register("digits")

    @data.register("tiny_arrays", overwrite=True)
    def not_a_dataset(**kwargs):
        return [1, 2]

    with pytest.raises(
        TypeError, match=r"dataset 'tiny_arrays' must return a `scenic_eqx.data.Dataset`.* Received: a list"
    ):
        data.get_dataset("tiny_arrays", batch_size=2)
    with pytest.raises(
        ValueError, match=r"`builder` of dataset 'd' must be callable.* Received: 'd.npz' of type str"
    ):
        data.register("d", "d.npz")
    with pytest.raises(
        ValueError,
        match=r"must take the keyword arguments batch_size, .* without eval_batch_size, shuffle_seed",
    ):
        data.register("d", lambda *, batch_size, process_index, process_count: None)
    with pytest.raises(
        ValueError, match=r"Unknown dataset `name` \(='tiny_aray'\). Did you mean 'tiny_arrays'"
    ):
        data.get_dataset("tiny_aray", batch_size=2)
