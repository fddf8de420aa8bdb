"""`loops.export_model` / `load_exported` (jax.export) and `loops.export_saved_model` (jax2tf)."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from scenic_eqx import loops, nn

IMAGE_SHAPE = (16, 16, 3)

# Runs an exported artifact in a process that imports jax and numpy only: not the model's
# code, not equinox, not scenic_eqx. It writes the outputs of each batch of `inputs.npz`.
_CONSUMER = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np

    artifact, inputs, outputs = sys.argv[1:]
    with open(artifact, "rb") as f:
        exported = jax.export.deserialize(f.read())
    batches = np.load(inputs)
    np.savez(outputs, **{name: np.asarray(exported.call(batches[name])) for name in batches.files})
    imported = sorted(m for m in sys.modules if m.split(".")[0] in ("equinox", "scenic_eqx", "jaxtyping"))
    assert not imported, imported
    """
)


def _tiny_vit(key, **kwargs):
    return nn.ViT(
        10,
        patch_size=4,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        mlp_dim=64,
        image_size=16,
        key=key,
        **kwargs,
    )


def _images(seed, batch_size, shape=IMAGE_SHAPE):
    return np.random.default_rng(seed).normal(size=(batch_size, *shape)).astype(np.float32)


@eqx.filter_jit
def _inference(model, model_state, images):
    return loops.apply_model(eqx.nn.inference_mode(model), model_state, images, key=None)[0]


def _logits(model, images, model_state=None):
    """The model's own outputs, batched and jitted as the loops evaluate it."""
    return np.asarray(_inference(model, model_state, images))


@pytest.fixture(scope="module")
def vit():
    return _tiny_vit(jax.random.key(0), dropout_rate=0.1)


@pytest.fixture(scope="module")
def exported_vit(vit, tmp_path_factory):
    return loops.export_model(
        vit, str(tmp_path_factory.mktemp("export") / "vit.jax"), input_shape=IMAGE_SHAPE
    )


def test_exported_vit_gives_the_models_logits_in_a_process_without_its_code(vit, exported_vit, tmp_path):
    """The acceptance check: max abs difference <= 1e-6, at two batch sizes (the batch axis
    is symbolic), after a plain `jax.export.deserialize` in a fresh process."""
    batches = {"three": _images(1, 3), "five": _images(2, 5)}
    np.savez(tmp_path / "inputs.npz", **batches)
    result = subprocess.run(
        [sys.executable, "-c", _CONSUMER, exported_vit, str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(tmp_path / "out.npz")
    for name, images in batches.items():
        expected = _logits(vit, images)
        assert outputs[name].shape == expected.shape == (len(images), 10)
        np.testing.assert_allclose(outputs[name], expected, rtol=0, atol=1e-6)


def test_the_description_says_what_the_artifact_takes_and_gives(exported_vit):
    with open(exported_vit + ".json") as f:
        description = json.load(f)
    with open(exported_vit, "rb") as f:
        size = len(f.read())
    assert description["input"] == {"shape": ["b", *IMAGE_SHAPE], "dtype": "float32"}
    assert description["outputs"]["leaves"] == [{"shape": ["b", 10], "dtype": "float32"}]
    assert description["platforms"] == [jax.export.default_export_platform()]
    assert description["jax_version"] == jax.__version__ and description["num_bytes"] == size
    assert len(description["sha256"]) == 64


def test_load_exported_runs_any_batch_size_and_rejects_other_inputs(vit, exported_vit):
    call = loops.load_exported(exported_vit)
    for batch_size in (1, 4):
        images = _images(batch_size, batch_size)
        np.testing.assert_allclose(np.asarray(call(images)), _logits(vit, images), rtol=0, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"`batch` must have shape \(b, 16, 16, 3\) .*Received: shape \(2, 8, 8, 3\)"
    ):
        call(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(
        ValueError, match=r"dtype float32, as the model was exported\. Received: .*dtype int32"
    ):
        call(np.zeros((2, *IMAGE_SHAPE), np.int32))


def test_a_fixed_batch_size_and_several_platforms(vit, tmp_path):
    path = loops.export_model(
        vit, tmp_path / "vit.jax", input_shape=IMAGE_SHAPE, batch_size=2, platforms=("cpu", "cuda")
    )
    with open(path + ".json") as f:
        assert json.load(f)["platforms"] == ["cpu", "cuda"]
    call = loops.load_exported(path)
    images = _images(3, 2)
    np.testing.assert_allclose(np.asarray(call(images)), _logits(vit, images), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(2, 16, 16, 3\) and .*Received: shape \(3, 16, 16, 3\)"):
        call(_images(3, 3))


def test_parameters_sharded_over_devices_are_exported_whole(tmp_path):
    """FSDP-sharded parameters (as `fit` returns them) become the program's constants."""
    fsdp = NamedSharding(loops.device_mesh(1), PartitionSpec("data"))
    vit = jax.tree.map(
        lambda x: jax.device_put(x, fsdp) if eqx.is_array(x) and x.shape[:1] == (32,) else x,
        _tiny_vit(jax.random.key(4)),
    )
    leaves = jax.tree.leaves(eqx.filter(vit, eqx.is_array))
    assert sum(not x.sharding.is_fully_replicated for x in leaves) > 5
    path = loops.export_model(vit, tmp_path / "vit.jax", input_shape=IMAGE_SHAPE)
    images = _images(7, 2)
    expected = _logits(jax.device_get(vit), images)
    np.testing.assert_allclose(np.asarray(loops.load_exported(path)(images)), expected, rtol=0, atol=1e-6)


def test_a_batch_norm_model_is_exported_with_its_running_statistics(tmp_path):
    model, initial_state = eqx.nn.make_with_state(nn.ResNet)(
        10, depth=18, width=4, stem="cifar", key=jax.random.key(1)
    )
    # One training-mode pass moves the running statistics away from their initial values.
    training_pass = eqx.filter_jit(lambda m, s, x: loops.apply_model(m, s, x, key=None)[1])
    state = training_pass(model, initial_state, jnp.asarray(_images(4, 8, (8, 8, 3)) * 3 + 1))
    path = loops.export_model(model, tmp_path / "resnet.jax", input_shape=(8, 8, 3), model_state=state)
    images = _images(5, 3, (8, 8, 3))
    exported = np.asarray(loops.load_exported(path)(images))
    np.testing.assert_allclose(exported, _logits(model, images, state), rtol=0, atol=1e-6)
    assert np.abs(exported - _logits(model, images, initial_state)).max() > 1e-3
    with pytest.raises(ValueError, match=r"`model_state` must be given .*BatchNorm.*Received: None"):
        loops.export_model(model, tmp_path / "stateless.jax", input_shape=(8, 8, 3))


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:],  # one bit flipped
    ],
    ids=["truncated", "bit_flip"],
)
def test_a_damaged_artifact_is_an_error(exported_vit, tmp_path, damage):
    path = str(tmp_path / "vit.jax")
    with open(exported_vit, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(damage(data))
    with open(exported_vit + ".json") as source, open(path + ".json", "w") as f:
        f.write(source.read())
    with pytest.raises(ValueError, match=r"`path` is damaged: its sha256 differs .*Export the model again"):
        loops.load_exported(path)


def test_a_missing_description_or_artifact_is_an_error(exported_vit, tmp_path):
    path = str(tmp_path / "vit.jax")
    with open(exported_vit, "rb") as source, open(path, "wb") as f:
        f.write(source.read())
    with pytest.raises(
        FileNotFoundError, match=r"written by `export_model`.*present, with its description missing"
    ):
        loops.load_exported(path)
    with pytest.raises(FileNotFoundError, match=r"Received: '.*absent.jax', missing"):
        loops.load_exported(str(tmp_path / "absent.jax"))
    with open(path + ".json", "w") as f:
        f.write('{"format": "something else"}')
    with pytest.raises(ValueError, match=r"must be of format 'scenic_eqx.exported_model/1'"):
        loops.load_exported(path)


def test_bad_export_arguments_name_themselves(vit, tmp_path):
    path = tmp_path / "vit.jax"
    with pytest.raises(
        ValueError, match=r"`input_shape` must be the shape of one example.*Received: \(-1, 16"
    ):
        loops.export_model(vit, path, input_shape=(-1, *IMAGE_SHAPE))
    with pytest.raises(ValueError, match=r"`input_dtype` must be a dtype.*Received: 'pixels'"):
        loops.export_model(vit, path, input_shape=IMAGE_SHAPE, input_dtype="pixels")
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive int.*Received: 0"):
        loops.export_model(vit, path, input_shape=IMAGE_SHAPE, batch_size=0)
    with pytest.raises(ValueError, match=r"`platforms` must be .*'cuda' or 'rocm'.*Received: \('gpu',\)"):
        loops.export_model(vit, path, input_shape=IMAGE_SHAPE, platforms=("gpu",))
    # A shape the model cannot take fails at export, with the model's own error.
    with pytest.raises(ValueError, match=r"the input of ViT.*Received: shape \(8, 8, 3\)"):
        loops.export_model(vit, path, input_shape=(8, 8, 3))
    assert not os.path.exists(path)


def test_saved_model_gives_the_models_logits(tmp_path):
    tf = pytest.importorskip("tensorflow")
    # The tanh GELU: TensorFlow 2.21 cannot read the exact GELU's erf as JAX 0.10 writes it.
    vit = _tiny_vit(jax.random.key(2), gelu_approximate=True)
    directory = loops.export_saved_model(vit, str(tmp_path / "saved"), input_shape=IMAGE_SHAPE)
    loaded = tf.saved_model.load(directory)
    for batch_size in (2, 3):
        images = _images(6 + batch_size, batch_size)
        outputs = loaded.signatures["serving_default"](inputs=tf.constant(images))["output_0"].numpy()
        np.testing.assert_allclose(outputs, _logits(vit, images), rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match=r"`directory` must not exist yet.*which exists"):
        loops.export_saved_model(vit, directory, input_shape=IMAGE_SHAPE)


def test_saved_model_that_tensorflow_cannot_run_is_never_written(tmp_path):
    pytest.importorskip("tensorflow")
    directory = tmp_path / "saved"
    try:
        loops.export_saved_model(_tiny_vit(jax.random.key(3)), str(directory), input_shape=IMAGE_SHAPE)
    except RuntimeError as error:
        assert "TensorFlow cannot run the exported model, so no SavedModel was written" in str(error)
        assert os.listdir(tmp_path) == []  # nor any staging directory
    else:  # a TensorFlow that reads this JAX's StableHLO runs it
        assert (directory / "saved_model.pb").is_file()


def test_saved_model_without_tensorflow_names_the_extra(vit, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"export_saved_model needs tensorflow.*scenic-eqx\[data\]"):
        loops.export_saved_model(vit, str(tmp_path / "saved"), input_shape=IMAGE_SHAPE)
