"""`load_weights` into `nn.CLIP`: parity with open_clip and transformers, and the checks.

The fixtures are tiny random-weight checkpoints written by `tools/make_clip_fixtures.py`
from an open_clip `CLIP` (OpenAI's key names) and a transformers `CLIPModel`, together
with those models' embeddings and `logits_per_image`.
"""

import json
import pathlib
import shutil
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_clip import SMALL

from scenic_eqx import nn

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
OPENAI, HF = FIXTURES / "clip_openai.safetensors", FIXTURES / "clip_hf"
REFERENCE = dict(np.load(FIXTURES / "clip_reference_outputs.npz"))
HF_EOS = 7  # The transformers fixture's end-of-text id (not its largest id).


def abstract(**overrides):
    """The model's structure without its random initialisation (loading fills it)."""
    return eqx.filter_eval_shape(nn.CLIP, **{**SMALL, **overrides}, key=jax.random.key(0))


@eqx.filter_jit
def outputs(model, images, texts):
    image = jax.vmap(model.encode_image)(images)
    text = jax.vmap(model.encode_text)(texts)
    unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    return image, text, jnp.exp(model.logit_scale) * unit(image) @ unit(text).T


def relative_errors(model, name: str, texts: str) -> dict[str, float]:
    """`max |ours - reference| / max |reference|` of each output on the fixtures' inputs."""
    ours = outputs(model, REFERENCE["images"], REFERENCE[texts])
    errors = {}
    for output, value in zip(("image_embedding", "text_embedding", "logits_per_image"), ours):
        reference = REFERENCE[f"{name}_{output}"]
        errors[output] = float(np.max(np.abs(np.asarray(value) - reference)) / np.max(np.abs(reference)))
    return errors


def modules(model, kind):
    leaves = jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, kind))
    return [leaf for leaf in leaves if isinstance(leaf, kind)]


PARITY = {
    # reference: (path, model arguments, texts, QuickGELU after loading)
    "openai_quick_gelu": (OPENAI, {"quick_gelu": True}, "openai_texts", True),
    # The same state dict in an exact-GELU model: the activation is the model's.
    "openai_gelu": (OPENAI, {"quick_gelu": False}, "openai_texts", False),
    # Built with exact GELU: transformers' config sets QuickGELU.
    "hf": (HF, {"quick_gelu": False, "eos_token_id": HF_EOS}, "hf_texts", True),
    "hf_scanned": (HF, {"quick_gelu": False, "eos_token_id": HF_EOS, "scan_layers": True}, "hf_texts", True),
}


@pytest.mark.parametrize("name", PARITY)
def test_embeddings_and_logits_match_the_reference_implementation(name):
    path, kw, texts, quick_gelu = PARITY[name]
    # Built with another LayerNorm eps: loading sets PyTorch's 1e-5.
    model = nn.load_weights(abstract(**kw, layer_norm_eps=1e-3), path)
    assert {m.quick_gelu for m in modules(model, nn.MlpBlock)} == {quick_gelu}
    assert {m.eps for m in modules(model, nn.LayerNorm)} == {1e-5}
    errors = relative_errors(model, name.removesuffix("_scanned"), texts)
    assert max(errors.values()) <= 1e-4, errors


def test_the_transformers_file_and_its_directory_load_the_same():
    from_directory = nn.load_weights(abstract(eos_token_id=HF_EOS), HF)
    from_file = nn.load_weights(abstract(eos_token_id=HF_EOS), HF / "model.safetensors")
    assert eqx.tree_equal(from_directory, from_file)
    state = load_file(HF / "model.safetensors")
    np.testing.assert_array_equal(from_file.logit_scale, state["logit_scale"])
    np.testing.assert_array_equal(from_file.image_tower.projection.weight, state["visual_projection.weight"])


def test_torch_state_dicts_load_as_their_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    state = {k: torch.from_numpy(v) for k, v in load_file(OPENAI).items()}
    expected = nn.load_weights(abstract(), OPENAI)
    # A plain state dict, a training checkpoint's, and one saved from DistributedDataParallel.
    for name, saved in (
        ("model.pt", state),
        ("checkpoint.pth", {"state_dict": state, "epoch": 3}),
        ("open_clip_pytorch_model.bin", {f"module.{k}": v for k, v in state.items()}),
    ):
        torch.save(saved, tmp_path / name)
        assert eqx.tree_equal(nn.load_weights(abstract(), tmp_path / name), expected), name
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(
        ValueError, match=r"must hold a state dict \(names to tensors\)\. Received: .*list\.pt"
    ):
        nn.load_weights(abstract(), tmp_path / "list.pt")
    (tmp_path / "broken.bin").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"readable with `torch.load\(weights_only=True\)`.*TorchScript"):
        nn.load_weights(abstract(), tmp_path / "broken.bin")


def test_a_torch_file_without_torch_names_the_alternative(tmp_path, monkeypatch):
    (tmp_path / "model.bin").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        ImportError, match=r"needs PyTorch, which is not installed: `pip install torch`, or save"
    ):
        nn.load_weights(abstract(), tmp_path / "model.bin")


def hf_copy(tmp_path, **config_changes) -> pathlib.Path:
    """The transformers fixture with its config.json changed (`{"text_config": {...}}`)."""
    directory = tmp_path / "clip_hf"
    shutil.copytree(HF, directory)
    config = json.loads((directory / "config.json").read_text())
    for section, changes in config_changes.items():
        config[section].update(changes)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_transformers_pooling_must_agree_with_the_model(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`eos_token_id` \(=None, .*must agree with the checkpoint's `text_config.eos_token_id` "
        r"\(=7; 2 means the largest id\)\. Build the CLIP with `eos_token_id=7`",
    ):
        nn.load_weights(abstract(), HF)
    # Configs written before transformers' fix give 2 and pool at the largest id, as OpenAI.
    assert isinstance(
        nn.load_weights(abstract(), hf_copy(tmp_path, text_config={"eos_token_id": 2})), nn.CLIP
    )
    # The largest id is where both rules pool, whatever the model says.
    last = hf_copy(tmp_path / "last", text_config={"eos_token_id": SMALL["vocab_size"] - 1})
    assert isinstance(nn.load_weights(abstract(), last), nn.CLIP)


def test_transformers_heads_must_be_the_models():
    with pytest.raises(
        ValueError,
        match=r"`vision_heads` \(=2\) must be the checkpoint's `vision_config.num_attention_heads` .* "
        r"Received: 3 in the config.json",
    ):
        nn.load_weights(abstract(vision_heads=2, eos_token_id=HF_EOS), HF)
    with pytest.raises(ValueError, match=r"`text_heads` \(=4\) must be .* Received: 2 in the config.json"):
        nn.load_weights(abstract(text_heads=4, eos_token_id=HF_EOS), HF)


def test_transformers_activations(tmp_path):
    gelu = hf_copy(tmp_path, text_config={"hidden_act": "gelu"}, vision_config={"hidden_act": "gelu"})
    model = nn.load_weights(abstract(eos_token_id=HF_EOS), gelu)
    assert {m.quick_gelu for m in modules(model, nn.MlpBlock)} == {False}
    mixed = hf_copy(tmp_path / "mixed", text_config={"hidden_act": "gelu"})
    with pytest.raises(ValueError, match=r"must give both towers the same `hidden_act` and `layer_norm_eps`"):
        nn.load_weights(abstract(eos_token_id=HF_EOS), mixed)
    relu = hf_copy(tmp_path / "relu", vision_config={"hidden_act": "relu"})
    with pytest.raises(
        ValueError, match=r"`vision_config.hidden_act` .* must be 'quick_gelu' or a GELU .* Received: 'relu'"
    ):
        nn.load_weights(abstract(eos_token_id=HF_EOS), relu)


def test_another_architecture_is_named():
    with pytest.raises(
        ValueError,
        match=r"must have the shapes of the CLIP's parameters\. Received: `image_tower.projection.weight` "
        r"\(checkpoint key 'visual.proj'\): checkpoint \(8, 24\), model \(16, 24\); "
        r"`text_tower.projection.weight` .*",
    ):
        nn.load_weights(abstract(embed_dim=16), OPENAI)
    with pytest.raises(
        ValueError, match=r"`text_tower.token_embedding.weight` .*checkpoint \(50, 16\), model \(64, 16\)"
    ):
        nn.load_weights(abstract(vocab_size=64), OPENAI)
    with pytest.raises(
        ValueError, match=r"checkpoint keys the model has no place for: visual.transformer.resblocks.1"
    ):
        nn.load_weights(abstract(vision_layers=1), OPENAI)
    with pytest.raises(
        ValueError, match=r"`num_layers` \(=3\) must be the checkpoint's number of encoder blocks"
    ):
        nn.load_weights(abstract(text_layers=3, scan_layers=True), OPENAI)


def test_a_missing_array_is_named(tmp_path):
    state = load_file(OPENAI)
    del state["ln_final.bias"]
    save_file(state, tmp_path / "clip.safetensors")
    with pytest.raises(
        ValueError, match=r"model parameters missing from the file: text_tower.encoder.norm.bias"
    ):
        nn.load_weights(abstract(), tmp_path / "clip.safetensors")


def test_clip_checkpoints_fit_only_clip():
    vit = eqx.filter_eval_shape(nn.ViT, 5, 8, 16, 2, 2, 32, 32, key=jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"Cannot load a CLIP state dict \(OpenAI, open_clip\) checkpoint into a ViT: supported are .*"
        r"CLIP from CLIP state dict \(OpenAI, open_clip\), transformers \.safetensors",
    ):
        nn.load_weights(vit, OPENAI)


def test_other_families_read_torch_files_too(tmp_path):
    """A transformers ViT's `pytorch_model.bin` (with its `vit.` prefix) loads as its `.safetensors`."""
    torch = pytest.importorskip("torch")
    vit_kw = {
        "num_classes": 5,
        "patch_size": 8,
        "hidden_size": 16,
        "num_layers": 2,
        "num_heads": 2,
        "mlp_dim": 32,
    }
    abstract_vit = lambda: eqx.filter_eval_shape(nn.ViT, **vit_kw, image_size=32, key=jax.random.key(0))
    source = FIXTURES / "hf_vit"
    shutil.copy(source / "config.json", tmp_path / "config.json")
    state = {k: torch.from_numpy(v) for k, v in load_file(source / "model.safetensors").items()}
    assert any(k.startswith("vit.") for k in state)
    torch.save(state, tmp_path / "pytorch_model.bin")
    expected = nn.load_weights(abstract_vit(), source)
    assert eqx.tree_equal(nn.load_weights(abstract_vit(), tmp_path / "pytorch_model.bin"), expected)
