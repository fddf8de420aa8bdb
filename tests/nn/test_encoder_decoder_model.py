import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import TransformerEncoderDecoder, posemb_sincos_1d
from scenic_eqx.tasks import EncoderDecoderTask

# LLVM optimisation off: it is most of the compile time of these small programs on
# CPU, and the properties checked here do not depend on it.
_jit = functools.partial(eqx.filter_jit, compiler_options={"xla_backend_optimization_level": 0})

VOCAB, SOURCE_VOCAB, BOS = 11, 9, 1
TINY = dict(num_classes=VOCAB, hidden_size=8, num_layers=1, num_heads=2, mlp_dim=16, max_len=8)


def _build(seed=0, **kwargs):
    """A model with its arrays drawn by numpy.

    Random initialisation compiles a PRNG program per shape, seconds each on CPU;
    these tests check properties that hold for any weights.
    """
    abstract = eqx.filter_eval_shape(TransformerEncoderDecoder, **{**TINY, **kwargs}, key=jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (
            jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s
        ),
        abstract,
    )


@pytest.fixture(scope="module")
def model():
    return _build(source_vocab_size=SOURCE_VOCAB)


def _inputs(rng, batch, source_len, target_len, num_pads=0):
    """Random tokens (never the pad id 0), the last `num_pads` source tokens padding."""
    source = rng.integers(1, SOURCE_VOCAB, size=(batch, source_len))
    source[:, source_len - num_pads :] = 0
    target_in = rng.integers(1, VOCAB, size=(batch, target_len))
    target_in[:, 0] = BOS
    return {
        "source": jnp.asarray(source, jnp.int32),
        "target_in": jnp.asarray(target_in, jnp.int32),
    }


_logits = _jit(lambda model, inputs: jax.vmap(model)(inputs))


def test_posemb_sincos_1d_literal():
    table = posemb_sincos_1d(3, 4)
    assert table.shape == (3, 4) and table.dtype == np.float32
    # Frequencies 1 and 1/100: temperature ** (2 / 4) = 100.
    for p in range(3):
        expected = [math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)]
        np.testing.assert_allclose(table[p], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"`dim` \(=5\) must be even"):
        posemb_sincos_1d(3, 5)


def test_shapes_and_one_trace_per_shape(model):
    @_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def logits(model, inputs):
        return jax.vmap(model)(inputs)

    rng = np.random.default_rng(0)
    out = logits(model, _inputs(rng, 2, 6, 5))
    logits(model, _inputs(rng, 2, 6, 5))
    assert out.shape == (2, 5, VOCAB) and out.dtype == jnp.float32
    assert np.all(np.isfinite(out))


def test_causal_later_targets_do_not_change_earlier_logits(model):
    inputs = _inputs(np.random.default_rng(1), 1, 6, 5)
    changed = dict(inputs, target_in=inputs["target_in"].at[0, 3].add(1) % VOCAB)
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), inputs, changed)
    before, after = _logits(model, both)
    np.testing.assert_allclose(before[:3], after[:3], rtol=1e-5, atol=1e-5)
    assert not np.allclose(before[3:], after[3:], atol=1e-3)


@pytest.mark.parametrize("posemb", ["sincos", "learn"])
def test_source_padding_changes_nothing(posemb):
    model = _build(posemb=posemb, source_vocab_size=SOURCE_VOCAB)
    inputs = _inputs(np.random.default_rng(2), 2, 8, 5, num_pads=3)
    # Padding at the end, so the real tokens keep their positions; and the padding
    # token's embedding must not reach the outputs either.
    sliced = dict(inputs, source=inputs["source"][:, :5])
    pad_row = model.source_embedding.weight.at[0].set(100.0)
    other_pad = eqx.tree_at(lambda m: m.source_embedding.weight, model, pad_row)

    @_jit
    def run(model, other_pad):
        return jax.vmap(other_pad)(inputs), jax.vmap(model)(sliced)

    np.testing.assert_allclose(*run(model, other_pad), rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    model = _build(posemb="learn", source_vocab_size=SOURCE_VOCAB)
    inputs = _inputs(np.random.default_rng(3), 2, 6, 5, num_pads=1)
    label = jnp.concatenate([inputs["target_in"][:, 1:], jnp.zeros((2, 1), jnp.int32)], axis=1)
    batch = {"inputs": inputs, "label": label}

    @_jit
    @eqx.filter_grad
    def grad(model):
        return EncoderDecoderTask().loss(jax.vmap(model)(batch["inputs"]), batch)

    grads = jax.tree_util.tree_leaves_with_path(eqx.filter(grad(model), eqx.is_inexact_array))
    params = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    assert len(grads) == len(params) > 0
    for path, g in grads:
        name = jax.tree_util.keystr(path)
        assert np.all(np.isfinite(g)), name
        assert np.any(g != 0), name


def test_greedy_decode_agrees_with_teacher_forcing(model):
    # Without the random head bias, the argmax varies with the input.
    model = eqx.tree_at(lambda m: m.head.bias, model, jnp.zeros(VOCAB))
    sources = _inputs(np.random.default_rng(4), 3, 6, 1, num_pads=2)["source"]

    @_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def decode(model, sources):
        decoded = jax.vmap(lambda s: model.decode(s, 6, BOS))(sources)
        target_in = jnp.concatenate([jnp.full((3, 1), BOS), decoded[:, :-1]], axis=1)
        forced = jax.vmap(model)({"source": sources, "target_in": target_in})
        return decoded, forced

    decoded, forced = decode(model, sources)
    decode(model, sources + 0)
    assert decoded.shape == (3, 6) and decoded.dtype == jnp.int32
    # Each greedy token is the argmax of the logits given the tokens before it.
    np.testing.assert_array_equal(decoded, jnp.argmax(forced, axis=-1))
    assert len(np.unique(decoded)) > 1


def test_dropout_in_training_only():
    model = _build(dropout_rate=0.3, attention_dropout_rate=0.3)
    inputs = jax.tree.map(lambda a: a[0], _inputs(np.random.default_rng(5), 1, 6, 5))

    @_jit
    def run(model, key):
        return model(inputs, key=key), eqx.nn.inference_mode(model)(inputs, key=key)

    # An RBG key: its random bits compile much faster than threefry's on CPU. (A key
    # left unthreaded to some dropout layer would raise here.)
    train, inference = run(model, jax.random.key(0, impl="unsafe_rbg"))
    no_dropout = _jit(lambda m: m(inputs))(_build())
    np.testing.assert_allclose(inference, no_dropout, rtol=1e-5, atol=1e-5)
    assert not np.allclose(train, no_dropout, atol=1e-3)


def test_structure():
    # Abstract: real initialisation is exercised by tests/projects/test_sequence_copy.py.
    model = eqx.filter_eval_shape(
        TransformerEncoderDecoder,
        **TINY,
        source_vocab_size=SOURCE_VOCAB,
        posemb="learn",
        key=jax.random.key(0),
    )
    assert model.source_embedding.weight.shape == (SOURCE_VOCAB, 8)
    assert model.target_embedding.weight.shape == (VOCAB, 8)
    assert model.source_posemb.shape == model.target_posemb.shape == (8, 8)
    assert model.head.weight.shape == (VOCAB, 8)
    sincos = eqx.filter_eval_shape(TransformerEncoderDecoder, **TINY, key=jax.random.key(0))
    assert sincos.source_posemb is None and sincos.target_posemb is None
    assert sincos.source_embedding.weight.shape == (VOCAB, 8)


def test_errors():
    key, model = jax.random.key(0), _build()
    call = _jit(lambda model, inputs: model(inputs))  # raises while tracing
    divisible = r"`hidden_size` \(=10\) must be divisible by `num_heads` \(=4\)"
    with pytest.raises(ValueError, match=divisible):
        TransformerEncoderDecoder(**{**TINY, "hidden_size": 10, "num_heads": 4}, key=key)
    with pytest.raises(ValueError, match=r"Unknown `posemb` \(='rope'\)"):
        TransformerEncoderDecoder(**TINY, posemb="rope", key=key)
    with pytest.raises(ValueError, match=r"`dim` \(=9\) must be even"):
        TransformerEncoderDecoder(**{**TINY, "hidden_size": 9, "num_heads": 3}, key=key)
    inputs = jax.tree.map(lambda a: a[0], _inputs(np.random.default_rng(6), 1, 9, 5))
    with pytest.raises(ValueError, match=r"source length \(=9\) must be at most `max_len` \(=8\)"):
        call(model, inputs)
    with pytest.raises(ValueError, match=r"target length \(=9\) must be at most `max_len` \(=8\)"):
        call(model, {"source": inputs["source"][:4], "target_in": inputs["source"]})
    missing = r"`inputs` \(keys \['source'\]\) is missing \['target_in'\]"
    with pytest.raises(ValueError, match=missing):
        call(model, {"source": inputs["source"]})
    too_long = r"`max_len` \(=9\) must be between 1 and the model's `max_len` \(=8\)"
    with pytest.raises(ValueError, match=too_long):
        model.decode(inputs["source"][:4], 9, BOS)
