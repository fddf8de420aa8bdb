"""Several steps per dispatch (`lax.scan` over stacked batches) train exactly like one."""

import jax
import numpy as np
import optax
import pytest
from tiny_models import BatchNormMLP, DropoutMLP, params, run

from scenic_eqx import loops
from scenic_eqx.loops._fit import _dispatches


@pytest.mark.parametrize("model_cls", [DropoutMLP, BatchNormMLP])
def test_four_steps_per_dispatch_equal_one(model_cls):
    model = model_cls(key=jax.random.key(0))
    single, single_history = run(model, 12, log_every=4)
    multi, multi_history = run(model, 12, log_every=4, steps_per_dispatch=4)
    for a, b in zip(params(multi), params(single)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [h["step"] for h in multi_history] == [4, 8, 12]
    for record, reference in zip(multi_history, single_history):
        np.testing.assert_allclose(record["loss"], reference["loss"], rtol=1e-6)


def test_dispatches_end_at_multiples_and_at_the_last_step():
    assert list(_dispatches(0, 10, 4)) == [(4, 4), (4, 8), (2, 10)]
    assert list(_dispatches(6, 12, 4)) == [(2, 8), (4, 12)]  # resumed at an unaligned step
    assert list(_dispatches(0, 3, 1)) == [(1, 1), (1, 2), (1, 3)]


def test_resuming_an_unaligned_checkpoint_with_more_steps_per_dispatch(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    uninterrupted, _ = run(model, 12, log_every=4)
    run(model, 6, log_every=2, workdir=tmp_path, checkpoint_every=6)
    resumed, history = run(model, 12, log_every=4, workdir=tmp_path, steps_per_dispatch=4)
    assert [h["step"] for h in history] == [8, 12]
    for a, b in zip(params(resumed), params(uninterrupted)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_running_out_of_batches_inside_a_dispatch_names_the_step():
    with pytest.raises(ValueError, match=r"`train_batches` ran out at step 13 of 16"):
        run(
            DropoutMLP(key=jax.random.key(0)), 16, log_every=8, steps_per_dispatch=8, optimizer=optax.sgd(0.1)
        )


def test_stacked_batches_go_to_the_data_axis_of_a_two_axis_mesh():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(4, 2), ("data", "model"))
    one, _ = run(DropoutMLP(key=jax.random.key(0)), 4, log_every=2, mesh=mesh)
    two, _ = run(DropoutMLP(key=jax.random.key(0)), 4, log_every=2, mesh=mesh, steps_per_dispatch=2)
    for a, b in zip(params(one), params(two)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert loops._sharding.num_local_devices(mesh) == 4
