"""The Flax linen references of `benchmarks/` mirror the scenic_eqx models they are
compared with, and `compile_memory.py` measures both the same way."""

import pathlib
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("flax")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

import compile_memory  # noqa: E402

from scenic_eqx import loops  # noqa: E402


@pytest.mark.parametrize("model", compile_memory.MODELS)
def test_linen_reference_has_the_scenic_eqx_parameters(model):
    scenic_step, (arrays, _) = compile_memory.scenic_eqx_step(model, "tiny", 2, "float32")
    flax_step, (params, batch_stats, *_) = compile_memory.flax_linen_step(model, "tiny", 2, "float32")
    scenic_params, _ = loops.partition_trainable(arrays.model)
    sizes = lambda tree: sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
    # Same tensors, up to layout (a Flax kernel is the transpose of a Linear weight).
    assert sizes(scenic_params) == sizes(params)
    if model != "vit":  # BatchNorm's running mean and variance, per channel
        assert sum(sizes(batch_stats)) == sum(sizes(arrays.model_state)) - sizes(arrays.model_state).count(1)


@pytest.mark.standard_dtype_promotion  # optax's Adam in the Flax step mixes Python floats with int32
def test_compiled_steps_hold_the_same_state():
    scenic = compile_memory.measure("vit", "scenic_eqx", "tiny", 2, "float32")
    flax = compile_memory.measure("vit", "flax_linen", "tiny", 2, "float32")
    for run in (scenic, flax):
        assert run["temp"] > 0 and run["lower_s"] > 0 and run["compile_s"] > 0
        assert run["total"] == run["argument"] + run["output"] - run["alias"] + run["temp"]
        # Parameters and Adam's two moments are donated: written in place.
        assert run["alias"] > 0.9 * (run["argument"] - 2 * 32 * 32 * 3 * 4)
    # The same parameters and optimizer state: the arguments differ only by the step
    # counter and PRNG key the scenic_eqx train state carries.
    assert abs(scenic["argument"] - flax["argument"]) < 64
