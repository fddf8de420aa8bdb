"""Seeded augmentation in `train_pipeline`: reproducible, and independent across hosts."""

import itertools

import numpy as np
import tensorflow as tf

from scenic_eqx.data import _pipeline


def _draws(process_index=None, shuffle_seed=0):
    # Eight identical examples: any difference between batches comes from the seeds.
    ds = tf.data.Dataset.from_tensor_slices({"x": tf.zeros(8), "label": tf.zeros(8, tf.int32)})

    def augment(example, seed):
        return {"inputs": tf.random.stateless_uniform([3], seed), "label": example["label"]}

    hosts = {} if process_index is None else {"process_index": process_index}
    batches = _pipeline.train_pipeline(
        ds, batch_size=4, shuffle_seed=shuffle_seed, random_preprocess_fn=augment, **hosts
    )
    return np.concatenate([b["inputs"] for b in itertools.islice(batches, 3)])


def test_hosts_draw_independent_augmentations():
    host0, host1, host2 = _draws(0), _draws(1), _draws(2)
    np.testing.assert_array_equal(host0, _draws(0))  # reproducible
    np.testing.assert_array_equal(host0, _draws())  # one-host runs draw as before
    for a, b in ((host0, host1), (host0, host2), (host1, host2)):
        assert not np.any(np.isclose(a, b))
    assert not np.any(np.isclose(_draws(1, shuffle_seed=1), host1))
    # Every draw within a host differs too (fresh seeds at every example).
    assert len(np.unique(host1[:, 0])) == len(host1)


def test_augmentation_seed_keeps_host_zero():
    assert _pipeline.augmentation_seed(7, 0) == 7
    seeds = {_pipeline.augmentation_seed(7, i) for i in range(1, 64)}
    assert len(seeds) == 63 and 7 not in seeds
