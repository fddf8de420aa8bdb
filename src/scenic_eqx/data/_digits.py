"""`digits`: scikit-learn's bundled handwritten digits as a TFDS dataset, built offline.

1,797 real 8x8 grey images (UCI "Optical Recognition of Handwritten Digits", the test
set of Alpaydin & Kaynak, 1998) ship inside scikit-learn, so this dataset is generated
locally with no download. It serves the default demo on machines without internet.

Importing this module imports TensorFlow Datasets and registers the builder under the
name `digits`; `get_dataset` imports it only when that dataset is asked for.
"""

import numpy as np
import tensorflow_datasets as tfds

from .._extras import require

NUM_TEST_EXAMPLES = 360
# The split is a fixed function of this seed: changing it would change every result.
SPLIT_SEED = 0


def split_indices(num_examples: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train/test split of `range(num_examples)`.

    Arguments:
        num_examples: the number of images (1,797).

    Returns:
        `(train_indices, test_indices)`, sorted, disjoint, covering every index; the
        test set is the first `NUM_TEST_EXAMPLES` of a seed-0 permutation.
    """
    permutation = np.random.default_rng(SPLIT_SEED).permutation(num_examples)
    return np.sort(permutation[NUM_TEST_EXAMPLES:]), np.sort(permutation[:NUM_TEST_EXAMPLES])


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits: 1,437 train and 360 test images, 10 classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fixed 1,437/360 train/test split (numpy seed 0)."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "8x8 grey images of handwritten digits 0-9 bundled with scikit-learn "
                "(sklearn.datasets.load_digits); pixel counts 0..16 scaled to 0..255."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=(
                "@misc{alpaydin1998optical, author={Alpaydin, E. and Kaynak, C.}, "
                "title={Optical Recognition of Handwritten Digits}, year={1998}, "
                "howpublished={UCI Machine Learning Repository}}"
            ),
        )

    def _split_generators(self, dl_manager):
        # `dl_manager` is unused on purpose: the data is already on disk.
        del dl_manager
        require("sklearn", "data", "Preparing the digits dataset")
        from sklearn.datasets import load_digits

        digits = load_digits()
        # 0..16 counts of set pixels in 4x4 blocks; x16 fills uint8 (16*16 clips to 255).
        images = np.minimum(digits.images * 16, 255).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int64)
        train, test = split_indices(len(labels))
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images, labels, indices):
        for index in indices:
            # The key is the index in scikit-learn's array: stable across rebuilds.
            yield int(index), {"image": images[index], "label": labels[index]}
