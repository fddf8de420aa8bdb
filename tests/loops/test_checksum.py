"""Array checksums: a fixed format (checked against a NumPy oracle and a literal), any
changed byte detected, the same value for every sharding."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from scenic_eqx.loops._checksum import array_checksums

_MASK = 2**32 - 1


def reference_checksum(x: np.ndarray) -> str:
    """The checksum by its definition: odd position weights, sums modulo 2**32."""
    x = np.asarray(x)
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
    words = x.view(unsigned).ravel().astype(np.uint64)
    index = np.arange(words.size, dtype=np.uint64)
    h = (index * 0x9E3779B1) & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    sums = [int(((words * w) & _MASK).sum()) & _MASK for w in ((2 * index + 1) & _MASK, h | 1)]
    return f"{sums[0]:08x}{sums[1]:08x}"


def test_literal_value_and_the_reference_definition():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    # A literal, so that checkpoints written today verify under later versions. By hand,
    # the first sum: 3*0x3F800000 + 5*0x40000000 + 7*0x40400000 + 9*0x40800000
    # + 11*0x40A00000 = 0x8CBA00000, which is 0xCBA00000 modulo 2**32.
    assert reference_checksum(x) == "cba00000dce00000"
    rng = np.random.default_rng(0)
    arrays = [
        x,
        rng.normal(size=(3, 5)).astype(np.float32),
        rng.normal(size=(4, 4)).astype(ml_dtypes.bfloat16),
        rng.integers(-128, 127, size=(7,)).astype(np.int8),
        rng.integers(0, 2**32, size=(2, 3, 2), dtype=np.uint32),
        np.array([True, False, True]),
        np.asarray(3.5, np.float32),
    ]
    assert array_checksums(arrays) == [reference_checksum(a) for a in arrays]
    # NumPy and JAX inputs agree.
    assert array_checksums([jnp.asarray(a) for a in arrays]) == array_checksums(arrays)


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.int8])
def test_every_single_byte_change_is_detected(dtype):
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(dtype)
    original = reference_checksum(x)
    raw = x.tobytes()
    for position in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(raw)
            damaged[position] ^= flip
            y = np.frombuffer(bytes(damaged), dtype=x.dtype).reshape(x.shape)
            assert reference_checksum(y) != original, (position, flip)


def test_swapped_elements_and_zeroed_arrays_are_detected():
    x = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    swapped = x.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert len(set(array_checksums([x, swapped, x.T.copy(), np.zeros_like(x)]))) == 4


def test_the_same_for_every_sharding():
    x = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)
    devices = np.asarray(jax.devices())
    rows = Mesh(devices, ("data",))
    grid = Mesh(devices[:4].reshape(2, 2), ("data", "model"))
    placed = [
        jax.device_put(x, devices[3]),
        jax.device_put(x, NamedSharding(rows, P())),
        jax.device_put(x, NamedSharding(rows, P("data"))),
        jax.device_put(x, NamedSharding(rows, P(None, "data"))),
        jax.device_put(x, NamedSharding(grid, P("model", "data"))),
    ]
    assert placed[2].addressable_shards[0].data.shape == (1, 16)
    assert array_checksums(placed) == [reference_checksum(x)] * len(placed)


def test_rejects_sub_byte_dtypes():
    with pytest.raises(
        TypeError, match=r"Cannot checksum an array of dtype int4.*Received: an array of shape \(4,\)"
    ):
        array_checksums([jnp.zeros(4, jnp.int4)])
