"""Strict settings for the whole suite.

Eight fake CPU devices, so that every sharded code path is exercised on one machine;
rank promotion raises and dtype promotion is strict (a bfloat16 array meeting a float32
one is an error, not a silent upcast; tests marked `standard_dtype_promotion`, which
drive third-party code that relies on it, are the allow-list); compiled programs are cached on disk; every jaxtyping annotation in `scenic_eqx.nn` and `scenic_eqx.tasks`
is checked by beartype, as in a user's program (`scenic_eqx._shape_checks`).
"""

import os
import socket

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A persistent compilation cache, shared by both test workers and every process a test
# starts (the variables are inherited): many tests compile the same small programs, and a
# rerun of the suite compiles almost nothing. Delete `.jax_cache/` to start cold.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_ROOT, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import jaxtyping  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

from scenic_eqx import _shape_checks  # noqa: E402

if not _shape_checks.installed():
    variable = _shape_checks.ENVIRONMENT_VARIABLE
    raise pytest.UsageError(
        f"The suite tests scenic_eqx with its shape checks on: unset `{variable}`. "
        f"Received: {variable}={os.environ.get(variable)!r}."
    )


@pytest.fixture(autouse=True)
def _standard_dtype_promotion_where_marked(request):
    if request.node.get_closest_marker("standard_dtype_promotion") is None:
        yield
        return
    with jax.numpy_dtype_promotion("standard"):
        yield


@pytest.fixture
def without_annotation_checks():
    """The jaxtyping checks off, so that a test sees the errors the library itself raises."""
    previous = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", previous)


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
