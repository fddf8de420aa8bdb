"""`get_dataset` refuses bad arguments clearly: the argument, what it must be, what it got.

Catalogue datasets run under `tfds.testing.mock_data` with metadata written for
`cifar10` and `imagenet2012`, so that their split names are known.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from scenic_eqx import data

SIZES = {"cifar10": {"train": 8, "test": 4}, "imagenet2012": {"train": 8, "validation": 4}}


@pytest.fixture(scope="module")
def metadata_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("metadata")
    for name, sizes in SIZES.items():
        builder = tfds.builder(name, data_dir=str(root))
        template = tfds.core.ShardedFileTemplate(
            data_dir=builder.data_dir,
            template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
            dataset_name=builder.name,
            filetype_suffix="tfrecord",
        )
        splits = [
            tfds.core.SplitInfo(
                name=split, shard_lengths=[n], num_bytes=0, filename_template=template.replace(split=split)
            )
            for split, n in sizes.items()
        ]
        builder.info.set_splits(tfds.core.SplitDict(splits))
        tf.io.gfile.makedirs(builder.data_dir)
        builder.info.write_to_directory(builder.data_dir)
    return str(root)


@pytest.fixture
def fake_tfds(metadata_dir):
    with tfds.testing.mock_data(data_dir=metadata_dir):
        yield


OK = {"batch_size": 2}
# (id, dataset name, arguments, error, match). Every message also says "Received:".
ROWS = [
    (
        "unknown_name",
        "cifar",
        OK,
        ValueError,
        r"Unknown dataset `name` \(='cifar'\)\. Did you mean 'cifar10', 'cifar100'\?.*Known datasets: .*coco/2017.*Received: 'cifar'",
    ),
    (
        "unknown_name_far",
        "ImageNet",
        OK,
        ValueError,
        r"Unknown dataset `name` \(='ImageNet'\)\. Did you mean 'imagenet2012'",
    ),
    (
        "bad_train_split",
        "cifar10",
        {**OK, "train_split": "trian"},
        ValueError,
        r"`train_split` must be a split name of 'cifar10' \(test, train\) or a slice of one.*Received: 'trian'",
    ),
    (
        "bad_valid_split_slice",
        "cifar10",
        {**OK, "valid_split": "test[:5"},
        ValueError,
        r"`valid_split` must be a split name of 'cifar10'.*Received: 'test\[:5'",
    ),
    (
        "batch_size_zero",
        "cifar10",
        {"batch_size": 0},
        ValueError,
        r"`batch_size` \(=0\) must be a positive integer\. Received: 0 of type int",
    ),
    (
        "batch_size_bool",
        "digits",
        {"batch_size": True},
        ValueError,
        r"`batch_size` \(=True\) must be a positive integer\. Received: True of type bool",
    ),
    (
        "eval_batch_size",
        "cifar10",
        {**OK, "eval_batch_size": -3},
        ValueError,
        r"`eval_batch_size` \(=-3\) must be a positive integer\. Received: -3",
    ),
    (
        "process_index",
        "cifar10",
        {**OK, "process_index": 2, "process_count": 2},
        ValueError,
        r"`process_index` \(=2\) must be an integer in \[0, `process_count` \(=2\)\)\. Received: 2",
    ),
    (
        "image_size_zero",
        "imagenet2012",
        {**OK, "image_size": 0},
        ValueError,
        r"`image_size` \(=0\) must be a positive int: the side of the square inputs\. Received: 0 of type int",
    ),
    (
        "image_size_small",
        "synthetic_segmentation",
        {**OK, "image_size": 4},
        ValueError,
        r"`image_size` \(=4\) must be at least 8\. Received: 4",
    ),
    (
        "max_boxes",
        "coco/2017",
        {**OK, "max_boxes": 0},
        ValueError,
        r"`max_boxes` \(=0\) must be a positive integer\. Received: 0",
    ),
    (
        "task",
        "oxford_iiit_pet",
        {**OK, "task": "depth"},
        ValueError,
        r"`task` \(='depth'\) must be 'classification' or 'segmentation'\. Received: 'depth'",
    ),
    (
        "unknown_option",
        "cifar10",
        {**OK, "image_size": 32},
        TypeError,
        r"Unknown option\(s\) image_size for `get_dataset` of 'cifar10'; known: train_split.*augment.*Received: image_size=32",
    ),
    (
        "unknown_options_digits",
        "digits",
        {**OK, "augment": False, "cach": True},
        TypeError,
        r"Unknown option\(s\) cach for `get_dataset` of 'digits'; known: train_split, valid_split, test_split, augment, crop_pad, randaugment, shuffle_buffer_size, cache, prefetch\. Received: cach=True",
    ),
    (
        "data_dir_missing",
        "cifar10",
        {**OK, "data_dir": "/no/such/tfds_dir"},
        FileNotFoundError,
        r"`data_dir` \(='/no/such/tfds_dir'\) does not exist: it must be the TFDS data directory where 'cifar10' is prepared.*Received: '/no/such/tfds_dir'",
    ),
    (
        "data_dir_missing_imagenet",
        "imagenet2012",
        {**OK, "data_dir": "/no/such/tfds_dir"},
        FileNotFoundError,
        r"`data_dir` \(='/no/such/tfds_dir'\) does not exist.*'imagenet2012'",
    ),
]
# Arguments of the wrong type. Under test, every annotation is checked by beartype,
# which would refuse them before `get_dataset` does: these rows run in a process of
# their own, without that check, as a user's program does.
TYPE_ROWS = [
    ("name_not_a_string", 10, OK, ValueError, r"Unknown dataset `name` \(=10\)\. Known datasets"),
    (
        "split_not_a_string",
        "imagenet2012",
        {**OK, "test_split": 3},
        ValueError,
        r"`test_split` must be a split name of 'imagenet2012' \(train, validation\).*Received: 3 of type int",
    ),
    (
        "batch_size_string",
        "cifar10",
        {"batch_size": "8"},
        ValueError,
        r"`batch_size` \(='8'\) must be a positive integer\. Received: '8' of type str",
    ),
    (
        "batch_size_float",
        "mnist",
        {"batch_size": 8.0},
        ValueError,
        r"`batch_size` \(=8\.0\) must be a positive integer\. Received: 8\.0 of type float",
    ),
    (
        "batch_size_none",
        "arrays",
        {"batch_size": None},
        ValueError,
        r"`batch_size` \(=None\) must be a positive integer\. Received: None of type NoneType",
    ),
    (
        "shuffle_seed",
        "cifar10",
        {**OK, "shuffle_seed": 1.5},
        ValueError,
        r"`shuffle_seed` \(=1\.5\) must be a non-negative integer\. Received: 1\.5 of type float",
    ),
    (
        "image_size_string",
        "oxford_iiit_pet",
        {**OK, "image_size": "224"},
        ValueError,
        r"`image_size` \(='224'\) must be a positive int.*Received: '224' of type str",
    ),
    (
        "image_size_pair",
        "coco/2017",
        {**OK, "image_size": (32, 32)},
        ValueError,
        r"`image_size` \(=\(32, 32\)\) must be a positive int.*Received: \(32, 32\) of type tuple",
    ),
    (
        "data_dir_type",
        "cifar10",
        {**OK, "data_dir": 3},
        ValueError,
        r"`data_dir` \(=3\) must be a path \(str or os.PathLike\) or None\. Received: 3 of type int",
    ),
]
# Rows whose check needs the dataset's split names (from the mocked metadata).
NEEDS_METADATA = {"bad_train_split", "bad_valid_split_slice"}


@pytest.mark.parametrize("row_id, name, kwargs, error, match", ROWS, ids=[row[0] for row in ROWS])
def test_bad_arguments_are_refused_clearly(request, row_id, name, kwargs, error, match):
    if row_id in NEEDS_METADATA:
        request.getfixturevalue("fake_tfds")
    with pytest.raises(error, match=match) as caught:
        data.get_dataset(name, **kwargs)
    assert "Received:" in str(caught.value)


def test_argument_checks_come_before_tensorflow():
    """The checks of `get_dataset`'s own arguments run before TensorFlow is imported."""
    code = """
import sys
from scenic_eqx import data
for kwargs in ({"batch_size": 0}, {"batch_size": 2, "eval_batch_size": "4"},
               {"batch_size": 2, "shuffle_seed": -1}, {"batch_size": 2, "data_dir": 1},
               {"batch_size": 2, "process_index": 1, "process_count": 1}):
    try:
        data.get_dataset("imagenet2012", **kwargs)
    except ValueError:
        pass
    else:
        raise AssertionError(kwargs)
try:
    data.get_dataset("imagenet", batch_size=2)
except ValueError:
    pass
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


_TYPE_ROWS_CODE = """
import json, sys
import tensorflow_datasets as tfds
from scenic_eqx import data

rows = json.loads(sys.argv[1])
results = {}
with tfds.testing.mock_data(data_dir=sys.argv[2]):
    for row_id, name, kwargs in rows:
        # JSON has no tuple: rebuild the pair of `image_size_pair`.
        kwargs = {key: tuple(v) if isinstance(v, list) else v for key, v in kwargs.items()}
        try:
            data.get_dataset(name, **kwargs)
            results[row_id] = [None, "no error"]
        except Exception as error:
            results[row_id] = [type(error).__name__, str(error)]
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def type_row_errors(metadata_dir):
    """The error of each row of TYPE_ROWS, raised in a process without beartype."""
    rows = [[row_id, name, kwargs] for row_id, name, kwargs, _, _ in TYPE_ROWS]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", _TYPE_ROWS_CODE, json.dumps(rows), metadata_dir],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.split("RESULTS")[-1])


@pytest.mark.parametrize("row_id, name, kwargs, error, match", TYPE_ROWS, ids=[row[0] for row in TYPE_ROWS])
def test_arguments_of_the_wrong_type_are_refused_clearly(type_row_errors, row_id, name, kwargs, error, match):
    error_name, message = type_row_errors[row_id]
    assert error_name == error.__name__, message
    assert re.search(match, message), message
    assert "Received:" in message
