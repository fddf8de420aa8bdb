"""`load_weights`: parity with reference PyTorch models, matching by name, head and
position-embedding handling.

The fixtures are tiny random-weight checkpoints written by `tools/make_weight_fixtures.py`
from transformers and timm models, together with those models' logits.
"""

import pathlib
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from scenic_eqx import nn
from scenic_eqx.nn import MlpMixer, ResNet, ViT, load_weights
from scenic_eqx.nn._posemb_resample import resample_posemb_grid

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
REFERENCE = dict(np.load(FIXTURES / "reference_outputs.npz"))
# The fixtures' architecture: 32x32 images, patch 8, width 16, 2 layers of 2 heads.
VIT = {
    "num_classes": 5,
    "patch_size": 8,
    "hidden_size": 16,
    "num_layers": 2,
    "num_heads": 2,
    "mlp_dim": 32,
    "image_size": 32,
}
MIXER = {
    "num_classes": 5,
    "patch_size": 8,
    "hidden_size": 16,
    "num_layers": 2,
    "tokens_mlp_dim": 8,
    "channels_mlp_dim": 32,
    "image_size": 32,
}


def abstract(constructor, **kw):
    """The model's structure without its random initialisation (loading fills it)."""
    return eqx.filter_eval_shape(constructor, **kw, key=jax.random.key(0))


def relative_error(model, name: str) -> float:
    """`max |logits - reference| / max |reference|` on the fixtures' inputs."""
    model, inputs = eqx.nn.inference_mode(model), REFERENCE["inputs"]
    if isinstance(model, ResNet):
        state = eqx.nn.State(model)  # The running statistics loaded into the model.
        batched = jax.vmap(model, (0, None), (0, None), axis_name="batch")
        apply = lambda model, x: batched(x, state)[0]
    else:
        apply = lambda model, x: jax.vmap(model)(x)
    forward = eqx.filter_jit(apply).lower(model, inputs)
    # Unoptimised XLA code compiles in half the time, and these models are tiny.
    logits = forward.compile(compiler_options={"xla_backend_optimization_level": 0})(model, inputs)
    reference = REFERENCE[name]
    return float(np.max(np.abs(np.asarray(logits) - reference)) / np.max(np.abs(reference)))


PARITY = {
    # fixture: (file, constructor, arguments, GELU approximate, LayerNorm eps)
    "hf_vit": ("hf_vit/model.safetensors", ViT, VIT, False, 1e-12),
    "timm_vit": ("timm_vit.safetensors", ViT, VIT, False, 1e-6),
    "timm_vit_map": ("timm_vit_map.safetensors", ViT, {**VIT, "classifier": "map"}, False, 1e-6),
    "google_vit": ("google_vit.npz", ViT, VIT, True, 1e-6),
    "big_vision_vit_tok": ("big_vision_vit_tok.npz", ViT, VIT, True, 1e-6),
    "big_vision_vit_map": (
        "big_vision_vit_map.npz",
        ViT,
        {**VIT, "classifier": "map", "scan_layers": True},
        True,
        1e-6,
    ),
    "timm_mixer": ("timm_mixer.safetensors", MlpMixer, MIXER, False, 1e-6),
    "google_mixer": ("google_mixer.npz", MlpMixer, MIXER, True, 1e-6),
}
RESNET_PARITY = {
    "hf_resnet_basic": ("hf_resnet_basic/model.safetensors", 18),
    "hf_resnet_bottleneck": ("hf_resnet_bottleneck/model.safetensors", 26),
    "timm_resnet_basic": ("timm_resnet_basic.safetensors", 18),
}


def modules(model, kind):
    leaves = jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, kind))
    return [leaf for leaf in leaves if isinstance(leaf, kind)]


@pytest.mark.parametrize("name", PARITY)
def test_logits_match_the_reference_implementation(name):
    file, constructor, kw, gelu_approximate, eps = PARITY[name]
    # Built with the other GELU and another eps: loading sets the checkpoint's numerics.
    kw = {**kw, "gelu_approximate": not gelu_approximate}
    if constructor is ViT:
        kw["layer_norm_eps"] = 1e-3
    model = load_weights(abstract(constructor, **kw), FIXTURES / file)
    mlps, norms = modules(model, nn.MlpBlock), modules(model, nn.LayerNorm)
    assert mlps and {m.gelu_approximate for m in mlps} == {gelu_approximate}
    assert norms and {m.eps for m in norms} == {eps}
    assert relative_error(model, name) <= 1e-4


@pytest.mark.parametrize("name", RESNET_PARITY)
def test_resnet_logits_match_the_reference_implementation(name):
    file, depth = RESNET_PARITY[name]
    model = load_weights(abstract(ResNet, num_classes=5, depth=depth, width=2), FIXTURES / file)
    assert relative_error(model, name) <= 1e-4


def test_resnet_running_statistics_are_the_initial_state():
    path = FIXTURES / "timm_resnet_basic.safetensors"
    model = nn.create("resnet18", num_classes=5, key=jax.random.key(0), width=2, weights=str(path))
    timm = load_file(path)
    norm = model.stages[1].blocks[0].downsample.norm
    mean, var = eqx.nn.State(model).get(norm.batch_state_index)
    np.testing.assert_array_equal(mean, timm["layer2.0.downsample.1.running_mean"])
    np.testing.assert_array_equal(var, timm["layer2.0.downsample.1.running_var"])
    np.testing.assert_array_equal(norm.weight, timm["layer2.0.downsample.1.weight"])
    # A large count makes Equinox's zero-debiasing factor 1 - 0.9**count exactly 1.
    assert 1 - norm.momentum ** int(eqx.nn.State(model).get(norm.batch_counter)) == 1.0


def test_resnet_built_with_make_with_state_is_refused():
    # What `eqx.nn.make_with_state` does to the model it returns.
    model = eqx.nn.delete_init_state(abstract(ResNet, num_classes=5, depth=18, width=2))
    with pytest.raises(ValueError, match=r"initial state was removed \(by `eqx.nn.make_with_state`"):
        load_weights(model, FIXTURES / "timm_resnet_basic.safetensors")


def test_transformers_resnet_of_another_variant_is_refused(tmp_path):
    source = FIXTURES / "hf_resnet_bottleneck"
    (tmp_path / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text('{"downsample_in_bottleneck": true}')
    with pytest.raises(ValueError, match=r"`downsample_in_bottleneck` \(=True\) in the config"):
        load_weights(abstract(ResNet, num_classes=5, depth=26, width=2), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"Cannot load a Google \.npz checkpoint into a ResNet"):
        load_weights(abstract(ResNet, num_classes=5, depth=26, width=2), FIXTURES / "google_vit.npz")


def test_stacked_and_per_block_layouts_give_the_same_blocks():
    file = FIXTURES / "big_vision_vit_map.npz"  # Stacked `Transformer/encoderblock/...`.
    scanned = load_weights(abstract(ViT, **VIT, classifier="map", scan_layers=True), file)
    looped = load_weights(abstract(ViT, **VIT, classifier="map"), file)
    for i, block in enumerate(looped.encoder.blocks):
        per_layer = jax.tree.map(
            lambda x, i=i: np.asarray(x)[i], eqx.filter(scanned.encoder.blocks, eqx.is_array)
        )
        assert eqx.tree_equal(eqx.filter(block, eqx.is_array), per_layer)
    key = "params/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel"
    stacked = np.load(file)[key]
    np.testing.assert_array_equal(
        looped.encoder.blocks[1].attention.query.weight, stacked[1].reshape(16, 16).T
    )


def test_big_vision_class_token_gets_a_zero_position_row():
    # big_vision adds the table before prepending the class token: no class row.
    npz = np.load(FIXTURES / "big_vision_vit_tok.npz")
    model = load_weights(abstract(ViT, **VIT), FIXTURES / "big_vision_vit_tok.npz")
    np.testing.assert_array_equal(model.pos_embedding.weight[0], np.zeros(16))
    np.testing.assert_array_equal(model.pos_embedding.weight[1:], npz["pos_embedding"][0])
    np.testing.assert_array_equal(model.cls_token, npz["cls"][0])


def with_values(model, where):
    """`model` with random values at `where` only: quicker than a whole random init."""
    rng = np.random.default_rng(0)
    values = [jnp.asarray(rng.normal(size=x.shape), x.dtype) for x in where(model)]
    return eqx.tree_at(where, model, values)


def test_other_num_classes_keeps_the_fresh_head_with_a_warning():
    model = abstract(ViT, **{**VIT, "num_classes": 7})
    model = with_values(model, lambda m: [m.head.weight, m.head.bias])
    with pytest.warns(UserWarning, match=r"5-class head and the model 7 classes"):
        loaded = load_weights(model, FIXTURES / "timm_vit.safetensors")
    assert loaded.head.weight is model.head.weight and loaded.head.bias is model.head.bias
    timm = load_file(FIXTURES / "timm_vit.safetensors")
    np.testing.assert_array_equal(loaded.encoder.norm.weight, timm["norm.weight"])


def test_position_embeddings_are_resampled_bilinearly_for_a_larger_image():
    timm = load_file(FIXTURES / "timm_vit.safetensors")
    model = abstract(ViT, **{**VIT, "image_size": 48})
    model = load_weights(model, FIXTURES / "timm_vit.safetensors")
    table = timm["pos_embed"][0]
    assert model.pos_embedding.weight.shape == (1 + 6 * 6, 16)
    np.testing.assert_array_equal(model.pos_embedding.weight[0], table[0])  # class token
    expected = bilinear(table[1:].reshape(4, 4, 16), (6, 6)).reshape(36, 16)
    np.testing.assert_allclose(model.pos_embedding.weight[1:], expected, rtol=1e-6, atol=1e-6)


def bilinear(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Oracle: half-pixel-centred bilinear resize, edges clamped, one axis at a time."""
    for axis, new in enumerate(size):
        old = grid.shape[axis]
        src = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, old - 1)
        w = (src - lo).reshape([-1 if a == axis else 1 for a in range(grid.ndim)])
        grid = np.take(grid, lo, axis) * (1 - w) + np.take(grid, hi, axis) * w
    return grid


def test_resample_posemb_grid_down_and_identity():
    grid = np.arange(4 * 4 * 2, dtype=np.float32).reshape(16, 2)
    np.testing.assert_array_equal(resample_posemb_grid(grid, (4, 4), (4, 4)), grid)
    # 4 -> 2 without antialiasing: each output averages a 2x2 block of the input.
    out = resample_posemb_grid(grid, (4, 4), (2, 2)).reshape(2, 2, 2)
    np.testing.assert_allclose(out[0, 0], grid.reshape(4, 4, 2)[:2, :2].mean((0, 1)))


# Name matching: every mismatch is named.


@pytest.fixture
def google_npz(tmp_path):
    """Writes a variant of `google_vit.npz` (a dict edit) and returns its path."""
    arrays = dict(np.load(FIXTURES / "google_vit.npz"))

    def write(edit):
        edit(arrays)
        path = tmp_path / "edited.npz"
        np.savez(path, **arrays)
        return path

    return write


def test_missing_parameter_is_named(google_npz):
    path = google_npz(lambda a: a.pop("Transformer/encoderblock_1/LayerNorm_0/scale"))
    with pytest.raises(ValueError, match=r"missing from the file: encoder\.blocks\[1\]\.norm1\."):
        load_weights(abstract(ViT, **VIT), path)


def test_unexpected_parameter_is_named(google_npz):
    path = google_npz(lambda a: a.update({"Transformer/extra/kernel": np.zeros(3)}))
    with pytest.raises(ValueError, match=r"no place for: Transformer/extra/kernel"):
        load_weights(abstract(ViT, **VIT), path)


def test_pre_logits_the_model_lacks_is_named(google_npz):
    path = google_npz(lambda a: a.update({"pre_logits/kernel": np.zeros((16, 16))}))
    with pytest.raises(ValueError, match=r"pre_logits/kernel \(as `pre_logits\.weight`\)"):
        load_weights(abstract(ViT, **VIT), path)


def test_not_strict_warns_and_keeps_initial_values(google_npz):
    def edit(arrays):
        arrays.pop("Transformer/encoderblock_1/LayerNorm_0/scale")
        arrays["Transformer/extra/kernel"] = np.zeros(3)

    path = google_npz(edit)
    model = with_values(abstract(ViT, **VIT), lambda m: [m.encoder.blocks[1].norm1.weight])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_weights(model, path, strict=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "encoder.blocks[1].norm1.weight" in messages and "Transformer/extra/kernel" in messages
    assert loaded.encoder.blocks[1].norm1.weight is model.encoder.blocks[1].norm1.weight
    npz = np.load(path)
    np.testing.assert_array_equal(
        loaded.encoder.blocks[0].norm1.weight, npz["Transformer/encoderblock_0/LayerNorm_0/scale"]
    )


def test_shape_mismatch_names_parameter_and_both_shapes():
    with pytest.raises(
        ValueError,
        match=r"`encoder\.blocks\[0\]\.mlp\.dense1\.weight` \(checkpoint key "
        r"'Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel'\): checkpoint \(32, 16\), "
        r"model \(48, 16\)",
    ):
        load_weights(abstract(ViT, **{**VIT, "mlp_dim": 48}), FIXTURES / "google_vit.npz")


def test_stacked_checkpoint_into_scanned_model_of_other_depth():
    with pytest.raises(
        ValueError,
        match=r"`num_layers` \(=3\) must be the checkpoint's number of encoder blocks. Received: .* 2 encoder blocks",
    ):
        load_weights(
            abstract(ViT, **{**VIT, "num_layers": 3, "classifier": "map", "scan_layers": True}),
            FIXTURES / "big_vision_vit_map.npz",
        )


def test_mixed_layouts_are_refused(google_npz):
    path = google_npz(
        lambda a: a.update(
            {
                "Transformer/encoderblock_0/LayerNorm_1/scale": a[
                    "Transformer/encoderblock_0/LayerNorm_2/scale"
                ]
            }
        )
    )
    with pytest.raises(ValueError, match=r"both map to the parameter `encoder\.blocks\[0\]\.norm2"):
        load_weights(abstract(ViT, **VIT), path)


def test_position_grid_that_cannot_be_inferred(google_npz):
    path = google_npz(
        lambda a: a.update(
            {
                "Transformer/posembed_input/pos_embedding": a["Transformer/posembed_input/pos_embedding"][
                    :, :12
                ]
            }
        )
    )
    with pytest.raises(ValueError, match=r"Cannot infer the position-embedding grid .* 12 rows"):
        load_weights(abstract(ViT, **VIT), path)


def test_abstract_model_with_a_head_to_keep():
    with (
        pytest.warns(UserWarning, match="freshly initialised"),
        pytest.raises(
            ValueError, match=r"`model` must be concrete .* head\.weight.* Received: an abstract model"
        ),
    ):
        load_weights(abstract(ViT, **{**VIT, "num_classes": 3}), FIXTURES / "google_vit.npz")


def test_unsupported_files_and_models(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"`path` must be an existing checkpoint file. Received: .*missing\.npz'\."
    ):
        load_weights(abstract(ViT, **VIT), tmp_path / "missing.npz")
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"must be a Google `\.npz`, a timm/transformers/OpenAI `\.safetensors`"
    ):
        load_weights(abstract(ViT, **VIT), tmp_path / "weights.h5")
    with pytest.raises(ValueError, match=r"transformers \.safetensors checkpoint into a MlpMixer"):
        load_weights(abstract(MlpMixer, **MIXER), FIXTURES / "hf_vit" / "model.safetensors")
    with pytest.raises(ValueError, match=r"Cannot load a Google \.npz checkpoint into a Linear"):
        load_weights(abstract(eqx.nn.Linear, in_features=2, out_features=2), FIXTURES / "google_vit.npz")


def test_transformers_config_is_read(tmp_path):
    source = FIXTURES / "hf_vit" / "model.safetensors"
    (tmp_path / "model.safetensors").write_bytes(source.read_bytes())
    (tmp_path / "config.json").write_text('{"hidden_act": "gelu_new", "layer_norm_eps": 1e-5}')
    model = load_weights(abstract(ViT, **VIT), tmp_path / "model.safetensors")
    assert model.encoder.blocks[0].mlp.gelu_approximate and model.encoder.norm.eps == 1e-5
    (tmp_path / "config.json").write_text('{"hidden_act": "relu"}')
    with pytest.raises(ValueError, match=r"`hidden_act` \(='relu'\) in the config\.json"):
        load_weights(abstract(ViT, **VIT), tmp_path / "model.safetensors")


def test_transformers_names_in_memory_layout(tmp_path):
    # transformers 5 renames ViT's layers in memory (`layers.{i}.attention.q_proj`, ...).
    renames = [
        ("vit.encoder.layer.", "vit.layers."),
        ("attention.attention.query", "attention.q_proj"),
        ("attention.attention.key", "attention.k_proj"),
        ("attention.attention.value", "attention.v_proj"),
        ("attention.output.dense", "attention.o_proj"),
        ("intermediate.dense", "mlp.fc1"),
        ("output.dense", "mlp.fc2"),
    ]
    arrays = {}
    for key, value in load_file(FIXTURES / "hf_vit" / "model.safetensors").items():
        for old, new in renames:
            key = key.replace(old, new)
        arrays[key] = value
    save_file(arrays, tmp_path / "renamed.safetensors")
    reference = load_weights(abstract(ViT, **VIT), FIXTURES / "hf_vit" / "model.safetensors")
    renamed = load_weights(abstract(ViT, **VIT), tmp_path / "renamed.safetensors")
    assert eqx.tree_equal(eqx.filter(reference, eqx.is_array), eqx.filter(renamed, eqx.is_array))


@pytest.mark.parametrize("name", ["google_vit.npz", "timm_vit.safetensors"])
@pytest.mark.parametrize("keep", [0, 10, 0.5, -5], ids=["empty", "10_bytes", "half", "all_but_5"])
def test_truncated_files_are_refused_naming_the_path(tmp_path, name, keep):
    data = (FIXTURES / name).read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / name
    path.write_bytes(data[:size])
    kind = r"\.npz` archive" if name.endswith(".npz") else r"\.safetensors` file"
    match = (
        rf"`path` must be a complete `{kind}.* Received: '.*{name}' \({size} bytes\), which cannot be read"
    )
    with pytest.raises(ValueError, match=match):
        load_weights(abstract(ViT, **VIT), path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_unless_allowed(google_npz, bad):
    def edit(arrays):
        for key in ("Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel", "head/bias"):
            arrays[key] = arrays[key].copy()
            arrays[key].flat[:2] = bad

    path = google_npz(edit)
    counts = "2 NaN and 0 infinite" if np.isnan(bad) else "0 NaN and 2 infinite"
    match = (
        rf"Checkpoint '.*edited\.npz' must hold finite weights \(pass `allow_nonfinite=True` "
        rf"to load it anyway\). Received: {counts} value\(s\) of 512 in "
        r"`encoder\.blocks\[1\]\.mlp\.dense1\.weight` \(checkpoint key "
        r"'Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel'\), the first such parameter; "
        r"1 more parameter\(s\) have some\."
    )
    with pytest.raises(ValueError, match=match):
        load_weights(abstract(ViT, **VIT), path)
    loaded = load_weights(abstract(ViT, **VIT), path, allow_nonfinite=True)
    assert not np.isfinite(loaded.head.bias).all()


class _CreatesAFile:
    """Unpickling this calls `open(path, "w")`: a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loading_executes_nothing_from_the_file(tmp_path):
    marker = tmp_path / "created_by_unpickling"
    arrays = dict(np.load(FIXTURES / "google_vit.npz"))
    evil = np.empty(1, object)
    evil[0] = _CreatesAFile(marker)
    path = tmp_path / "evil.npz"
    np.savez(path, **{**arrays, "head/bias": evil})
    match = (
        r"`path` must hold numeric arrays only. Received: '.*evil\.npz', where its entry "
        r"'head/bias' is an object array: reading it would unpickle Python objects, which can "
        r"execute code from the file, so it is refused\."
    )
    with pytest.raises(ValueError, match=match):
        load_weights(abstract(ViT, **VIT), path)
    assert not marker.exists()
    # A whole file that is a pickle, named like an archive, is refused too.
    import pickle

    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"head/bias": _CreatesAFile(marker)}))
    with pytest.raises(ValueError, match=r"where the file is a pickle: reading it would unpickle"):
        load_weights(abstract(ViT, **VIT), pickled)
    assert not marker.exists()


def test_google_attention_wider_than_the_tokens_loads_with_head_dim(google_npz):
    # Two heads of 12 on 16-wide tokens (big_vision's `qkv_features`=24): the per-head
    # Flax kernels fill a ViT built with `head_dim=12`.
    rng = np.random.default_rng(0)
    block = "Transformer/encoderblock_{}/MultiHeadDotProductAttention_1"

    def widen(arrays):
        for i in range(2):
            for name in ("query", "key", "value"):
                arrays[f"{block.format(i)}/{name}/kernel"] = rng.normal(size=(16, 2, 12)).astype(np.float32)
                arrays[f"{block.format(i)}/{name}/bias"] = rng.normal(size=(2, 12)).astype(np.float32)
            arrays[f"{block.format(i)}/out/kernel"] = rng.normal(size=(2, 12, 16)).astype(np.float32)

    path = google_npz(widen)
    model = load_weights(abstract(ViT, **VIT, head_dim=12), path)
    arrays = np.load(path)
    # Flax's attention on one sequence, head by head, as the reference.
    x = rng.normal(size=(5, 16)).astype(np.float32)
    q, k, v = (
        np.einsum("td,dhk->htk", x, arrays[f"{block.format(0)}/{n}/kernel"])
        + arrays[f"{block.format(0)}/{n}/bias"][:, None]
        for n in ("query", "key", "value")
    )
    logits = np.einsum("hqk,hsk->hqs", q, k) / np.sqrt(12)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    heads = np.einsum("hqs,hsk->qhk", weights / weights.sum(-1, keepdims=True), v)
    expected = np.einsum("qhk,hkd->qd", heads, arrays[f"{block.format(0)}/out/kernel"])
    expected += arrays[f"{block.format(0)}/out/bias"]
    out = eqx.filter_jit(model.encoder.blocks[0].attention)(jnp.asarray(x))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
