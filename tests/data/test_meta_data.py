"""`MetaData`: typed fields read as attributes or as a mapping; malformed values refused."""

import numpy as np
import pytest

from scenic_eqx import data

REQUIRED = dict(input_shape=(-1, 8, 8, 1), input_dtype=np.float32, num_train_examples=10, num_eval_examples=4)


def test_fields_read_as_attributes_and_as_a_mapping():
    meta = data.MetaData(**REQUIRED, dataset_name="toy", num_classes=3, class_names=["a", "b", "c"])
    assert meta.num_classes == 3 and meta["num_classes"] == 3
    assert meta.class_names == ("a", "b", "c")  # stored immutable
    assert "label_shape" not in meta and meta.get("label_shape") is None  # None: absent
    with pytest.raises(KeyError):
        meta["max_boxes"]
    assert dict(meta) == {
        **REQUIRED,
        "dataset_name": "toy",
        "num_classes": 3,
        "class_names": ("a", "b", "c"),
        "target_is_onehot": False,
    }
    assert meta == dict(meta) and len(meta) == 8


def test_a_builders_dict_becomes_meta_data_with_its_own_keys_kept():
    dataset = data.Dataset(iter([]), [], [], {**REQUIRED, "dataset_name": "toy", "vocabulary": "abc"})
    assert isinstance(dataset.meta_data, data.MetaData)
    assert dataset.meta_data["vocabulary"] == "abc" and dataset.meta_data.extra == {"vocabulary": "abc"}
    assert dataset.meta_data.input_dtype is np.float32
    changed = dataset.meta_data.replace(valid_source="test", vocabulary="xyz")
    assert changed.valid_source == "test" and changed["vocabulary"] == "xyz"
    assert dataset.meta_data.valid_source is None  # the original is unchanged


def test_every_library_dataset_returns_meta_data():
    images = np.zeros((6, 4, 4, 3), np.float32)
    dataset = data.from_arrays((images, np.arange(6) % 2), (images, np.arange(6) % 2), batch_size=2)
    assert isinstance(dataset.meta_data, data.MetaData)
    assert dataset.meta_data.num_classes == 2 and dataset.meta_data.label_shape == ()


@pytest.mark.parametrize(
    "changes, match",
    [
        (
            {"input_shape": (8, 8, 1)},
            r"`meta_data.input_shape` must be \(-1, \*example_shape\).*Received: \(8, 8, 1\)",
        ),
        ({"input_shape": (-1, 0, 8)}, r"`meta_data.input_shape`.*positive sizes.*Received: \(-1, 0, 8\)"),
        (
            {"input_dtype": "not a dtype"},
            r"`meta_data.input_dtype` must be a numpy dtype.*Received: 'not a dtype'",
        ),
        (
            {"num_train_examples": -1},
            r"`meta_data.num_train_examples` must be a non-negative int.*Received: -1",
        ),
        (
            {"num_eval_examples": 2.5},
            r"`meta_data.num_eval_examples` must be a non-negative int.*Received: 2.5",
        ),
        ({"num_classes": 0}, r"`meta_data.num_classes` must be a positive int or None.*Received: 0"),
        ({"num_classes": True}, r"`meta_data.num_classes` must be a positive int or None.*Received: True"),
        (
            {"num_classes": 3, "class_names": ("a", "b")},
            r"`meta_data.class_names` must be one name per class \(3\).*Received: \('a', 'b'\)",
        ),
        ({"extra": {"num_classes": 2}}, r"`meta_data.extra` must be keys other than the typed fields"),
    ],
)
def test_malformed_fields_are_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        data.MetaData(**{**REQUIRED, "dataset_name": "toy", **changes})


def test_a_dict_without_required_fields_names_them():
    with pytest.raises(ValueError, match=r"it lacks num_eval_examples, dataset_name. Received keys: \["):
        data.Dataset(iter([]), [], [], {k: v for k, v in REQUIRED.items() if k != "num_eval_examples"})
