"""Rematerialisation per block (`remat_policy`): the same loss, gradients and BatchNorm
state as without it, less compiled memory, and an error naming the valid policies."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn import BiTResNet, MlpMixer, ResNet, ViT, ViViT
from scenic_eqx.nn._encoder import Encoder
from scenic_eqx.nn._remat import REMAT_POLICIES

# LLVM optimisation off: these small programs compile about twice as fast, and the
# tests check values and buffer sizes, not speed.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

TINY_VIT = {
    "num_classes": 3, "patch_size": 4, "hidden_size": 16, "num_layers": 2, "num_heads": 2,
    "mlp_dim": 32, "image_size": 8,
    # Randomness inside the blocks: the recomputation must draw the same masks.
    "dropout_rate": 0.1, "attention_dropout_rate": 0.1, "stochastic_depth": 0.2,
}  # fmt: skip


def _assert_same(got, want, rtol=1e-6):
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        # Remat changes the program XLA fuses, and with it the order of some float32
        # sums: an entry near zero may differ by round-off relative to its own size, so
        # atol is `rtol` of the array's largest entry. Its floor covers gradients that
        # are zero by symmetry (an attention key's bias), which come out as ~1e-8 noise.
        atol = max(rtol * float(np.max(np.abs(w), initial=0)), 1e-7)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def _cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def _loss_and_grads(model, images, labels, key):
    """Loss and parameter gradients of a stateless model, keyed dropout on."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params, images, labels, key):
        model = eqx.combine(params, static)
        keys = jax.random.split(key, images.shape[0])
        logits = jax.vmap(lambda x, k: model(x, key=k), axis_name="batch")(images, keys)
        return _cross_entropy(logits, labels)

    return _jit(jax.value_and_grad(loss))(params, images, labels, key)


@pytest.fixture(scope="module")
def data():
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    return images, jnp.array([0, 1, 2, 1]), jax.random.key(2)


@pytest.fixture(scope="module")
def vit_reference(data):
    """Loss and gradients without remat, by `scan_layers`."""
    return {
        scan: _loss_and_grads(ViT(**TINY_VIT, scan_layers=scan, key=jax.random.key(0)), *data)
        for scan in (False, True)
    }


@pytest.mark.parametrize(
    "scan_layers, policy",
    [(False, p) for p in REMAT_POLICIES] + [(True, "nothing_saveable"), (True, "dots_saveable")],
)
def test_vit_same_loss_and_gradients(data, vit_reference, scan_layers, policy):
    model = ViT(**TINY_VIT, scan_layers=scan_layers, remat_policy=policy, key=jax.random.key(0))
    _assert_same(_loss_and_grads(model, *data), vit_reference[scan_layers])


@pytest.mark.parametrize(
    "build, input_shape, num_blocks",
    [
        (lambda p: ViT(**TINY_VIT, remat_policy=p, key=jax.random.key(0)), (8, 8, 3), 2),
        # The scan body holds one checkpointed block, run `num_layers` times.
        (lambda p: ViT(**TINY_VIT, scan_layers=True, remat_policy=p, key=jax.random.key(0)),
         (8, 8, 3), 1),
        (lambda p: MlpMixer(3, 4, 16, 3, 8, 32, 8, remat_policy=p, key=jax.random.key(0)),
         (8, 8, 3), 3),
        (lambda p: BiTResNet(3, depth=26, width=8, num_groups=2, remat_policy=p,
                             key=jax.random.key(0)), (16, 16, 3), 8),
        (lambda p: ResNet(3, depth=18, width=4, remat_policy=p, key=jax.random.key(0)),
         (16, 16, 3), 8),
    ],
    ids=["vit", "vit_scan", "mixer", "bit", "resnet"],
)  # fmt: skip
def test_one_checkpoint_per_block(build, input_shape, num_blocks):
    """Each residual block, and nothing else, runs under `jax.checkpoint`."""

    def count(policy):
        model = eqx.nn.inference_mode(eqx.filter_eval_shape(build, policy))  # no keys needed
        params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        images = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
        if isinstance(model, ResNet):
            state = eqx.filter_eval_shape(lambda m: eqx.nn.State(m), model)
            call = lambda p, x, s: jax.vmap(
                eqx.combine(p, static), axis_name="batch", in_axes=(0, None), out_axes=(0, None)
            )(x, s)[0]
        else:
            state = None
            call = lambda p, x, s: jax.vmap(eqx.combine(p, static), axis_name="batch")(x)
        text = str(jax.make_jaxpr(call)(params, images, state))
        # `jax.checkpoint`'s primitive, printed as `remat2` in jax 0.10 (`checkpoint` before).
        return text.count("remat2[") + text.count("checkpoint[")  # fmt: skip

    assert count("nothing_saveable") == num_blocks
    assert count(None) == 0


def test_mixer_same_loss_and_gradients(data):
    tiny = {"num_classes": 3, "patch_size": 4, "hidden_size": 16, "num_layers": 2,
            "tokens_mlp_dim": 8, "channels_mlp_dim": 32, "image_size": 8,
            "stochastic_depth": 0.2}  # fmt: skip
    reference = _loss_and_grads(MlpMixer(**tiny, key=jax.random.key(0)), *data)
    model = MlpMixer(**tiny, remat_policy="nothing_saveable", key=jax.random.key(0))
    _assert_same(_loss_and_grads(model, *data), reference)


def test_bit_same_loss_and_gradients(data):
    tiny = {"num_classes": 3, "depth": 26, "width": 8, "num_groups": 2}
    images = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    data = (images, data[1][:2], data[2])
    reference = _loss_and_grads(BiTResNet(**tiny, key=jax.random.key(0)), *data)
    model = BiTResNet(**tiny, remat_policy="nothing_saveable", key=jax.random.key(0))
    _assert_same(_loss_and_grads(model, *data), reference)


def test_resnet_same_loss_gradients_and_batch_norm_state(data):
    """The state threads through the checkpointed blocks: same running statistics.

    Compared in float64. In float32, BatchNorm's backward pass (statistics over 4
    examples of 1x1 maps in the last stage) amplifies round-off, and the checkpointed
    program sums in another order: the gradients with and without remat differ by ~1e-5
    of their scale, as much as either differs from the float64 gradient. In float64
    they agree to ~1e-13: the same function, not an approximation of it.
    """
    tiny = {"num_classes": 3, "depth": 18, "width": 4, "stem": "cifar",
            "zero_init_residual": False}  # fmt: skip
    # BatchNorm's step counter too: under x64 `counter + 1` is an int64.
    to64 = lambda tree: jax.tree.map(
        lambda x: x.astype(jnp.float64 if eqx.is_inexact_array(x) else jnp.int64)
        if eqx.is_array(x) else x,
        tree,
    )  # fmt: skip

    def step(model, images, labels):
        state = eqx.nn.State(model)
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def loss(params, state, images, labels):
            batched = jax.vmap(
                eqx.combine(params, static),
                axis_name="batch",
                in_axes=(0, None),
                out_axes=(0, None),
            )
            logits, state = batched(images, state)
            return _cross_entropy(logits, labels), state

        grad_fn = _jit(jax.value_and_grad(loss, has_aux=True))
        return grad_fn(params, to64(state), to64(images), labels)

    reference = ResNet(**tiny, key=jax.random.key(0))
    model = ResNet(**tiny, remat_policy="nothing_saveable", key=jax.random.key(0))
    with jax.enable_x64(True):
        (ref_loss, ref_state), ref_grads = step(to64(reference), *data[:2])
        (loss, state), grads = step(to64(model), *data[:2])
        _assert_same((loss, grads, state), (ref_loss, ref_grads, ref_state), rtol=1e-10)
        # The running statistics did move: the comparison above is not of initial values.
        initial = jax.tree.leaves(to64(eqx.nn.State(model)))
        assert any(not np.allclose(s, i) for s, i in zip(jax.tree.leaves(state), initial))


def test_inference_mode_and_pytree_round_trip(data):
    """The policy is a static string: flattening, `inference_mode` and calls without a
    key (no dropout, keys `None` inside the checkpointed blocks) all keep working."""
    model = ViT(**TINY_VIT, remat_policy="nothing_saveable", key=jax.random.key(0))
    leaves, treedef = jax.tree.flatten(model)
    assert jax.tree.unflatten(treedef, leaves).encoder.remat_policy == "nothing_saveable"
    hash(treedef)
    plain = eqx.nn.inference_mode(ViT(**TINY_VIT, key=jax.random.key(0)))
    model = eqx.nn.inference_mode(model)
    logits = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))
    np.testing.assert_allclose(logits(model, data[0]), logits(plain, data[0]), rtol=1e-6)


def test_compiled_training_memory_falls():
    """`"nothing_saveable"` keeps only each block's input for the backward pass.

    Blocks run with `scan_layers=True`: inside the scan the recomputation is its own loop
    in the backward pass. XLA:CPU's default compilation undoes remat of unrolled blocks
    (see `_remat`'s docstring and `benchmarks/remat_memory.py`).
    """
    images = jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((8,), jnp.int32)

    def temp_bytes(policy):
        model = eqx.filter_eval_shape(
            lambda key: ViT(10, 4, 192, 6, 3, 768, 32, scan_layers=True, remat_policy=policy,
                            key=key),
            jax.random.key(0),
        )  # fmt: skip
        params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))

        def loss(params, images, labels):
            logits = jax.vmap(eqx.combine(params, static), axis_name="batch")(images)
            return _cross_entropy(logits, labels)

        compiled = _jit(jax.grad(loss)).lower(params, images, labels).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    # Measured with jax 0.10.2 on XLA:CPU: 16.5 MB against 69.4 MB (ratio 0.24).
    assert temp_bytes("nothing_saveable") < 0.4 * temp_bytes(None)


def test_policy_reaches_every_encoder_and_stage():
    """From `create`'s overrides (a config's `model.remat_policy`) to each block holder."""
    build = lambda f: eqx.filter_eval_shape(f, jax.random.key(0))
    vit = build(lambda k: nn.create("vit_ti16", num_classes=3, remat_policy="dots_saveable", key=k))
    assert vit.encoder.remat_policy == "dots_saveable"
    resnet = build(lambda k: nn.create("resnet18", num_classes=3, remat_policy="nothing_saveable",
                                       key=k))  # fmt: skip
    assert {stage.remat_policy for stage in resnet.stages} == {"nothing_saveable"}
    bit = build(lambda k: nn.create("bit_r50x1", num_classes=3, remat_policy="nothing_saveable",
                                    key=k))  # fmt: skip
    assert {stage.remat_policy for stage in bit.stages} == {"nothing_saveable"}
    mixer = build(lambda k: nn.create("mixer_s16", num_classes=3, remat_policy="nothing_saveable",
                                      key=k))  # fmt: skip
    assert mixer.remat_policy == "nothing_saveable"
    vivit = build(
        lambda k: ViViT(3, (2, 4, 4), 16, 1, 2, 32, num_frames=4, image_size=8,
                        attention_type="factorized_encoder", num_temporal_layers=1,
                        remat_policy="nothing_saveable", key=k)
    )  # fmt: skip
    assert vivit.encoder.remat_policy == vivit.temporal_encoder.remat_policy == "nothing_saveable"
    assert build(lambda k: ResNet(3, depth=18, key=k)).stages[0].remat_policy is None


@pytest.mark.parametrize(
    "build",
    [
        lambda policy: ViT(**TINY_VIT, remat_policy=policy, key=jax.random.key(0)),
        lambda policy: ViViT(3, 4, 16, 1, 2, 32, num_frames=4, image_size=8,
                             remat_policy=policy, key=jax.random.key(0)),
        lambda policy: Encoder(1, 16, 2, 32, remat_policy=policy, key=jax.random.key(0)),
        lambda policy: MlpMixer(3, 4, 16, 1, 8, 32, 8, remat_policy=policy,
                                key=jax.random.key(0)),
        lambda policy: ResNet(3, depth=18, remat_policy=policy, key=jax.random.key(0)),
        lambda policy: BiTResNet(3, depth=26, remat_policy=policy, key=jax.random.key(0)),
    ],
    ids=["vit", "vivit", "encoder", "mixer", "resnet", "bit"],
)  # fmt: skip
def test_unknown_policy_is_an_error(build):
    match = r"`remat_policy` must be None .*'nothing_saveable'.*Received: 'nothing'"
    with pytest.raises(ValueError, match=match):
        build("nothing")
