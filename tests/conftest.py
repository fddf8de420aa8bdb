"""Strict settings for the whole suite.

Eight fake CPU devices, so that every sharded code path is exercised on one machine;
rank promotion raises; every jaxtyping annotation in `scenic_eqx` is checked by beartype
(see `--jaxtyping-packages` in pyproject.toml).
"""

import os
import socket

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """A fresh, seeded PRNG key on each call: tests are deterministic."""
    keys = iter(jax.random.split(jax.random.key(5678), 1000))
    return lambda: next(keys)


@pytest.fixture
def free_port():
    """A function returning a free TCP port on 127.0.0.1 (for `jax.distributed` clusters)."""

    def find() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return find
