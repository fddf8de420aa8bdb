"""Per-example ops for `tf.data` pipelines: decoding, resizing, crops, flips, RandAugment.

`from scenic_eqx.data import ops` imports TensorFlow (`import scenic_eqx.data` does
not). Random ops are stateless: they take an integer `[2]` `seed`. Batch-level mixing
(`mixup`, `cutmix`) lives in `scenic_eqx.data` itself and needs no TensorFlow.
"""

from .._extras import require

require("tensorflow", "data", "scenic_eqx.data.ops")

from ._preprocess import (
    CIFAR10_MEAN as CIFAR10_MEAN,
    CIFAR10_STD as CIFAR10_STD,
    CIFAR100_MEAN as CIFAR100_MEAN,
    CIFAR100_STD as CIFAR100_STD,
    IMAGENET_MEAN as IMAGENET_MEAN,
    IMAGENET_STD as IMAGENET_STD,
    central_crop as central_crop,
    crop_offsets as crop_offsets,
    decode as decode,
    decode_and_inception_crop as decode_and_inception_crop,
    inception_box as inception_box,
    inception_crop as inception_crop,
    normalize as normalize,
    onehot as onehot,
    random_crop as random_crop,
    random_crop_with_pad as random_crop_with_pad,
    random_flip as random_flip,
    resize as resize,
    resize_and_pad as resize_and_pad,
    resize_small as resize_small,
    split_seed as split_seed,
    value_range as value_range,
)
from ._randaugment import randaugment as randaugment
