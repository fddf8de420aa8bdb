"""projects/mbt: an MBT started from an image ViT computes the ViT in each modality's stream
(a clip of one repeated frame; a spectrogram as a grey image), by function and by config
from a Google checkpoint; mismatched models are refused."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn, run

PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "mbt")
vit_init = run.import_file(os.path.join(PROJECT, "vit_init.py"))
model_file = run.import_file(os.path.join(PROJECT, "model.py"))
CHECKPOINT = os.path.join(os.path.dirname(__file__), "..", "nn", "fixtures", "google_vit.npz")
SIZES = dict(hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32)
# Both streams on the ViT's 4x4 grid of 8x8 patches; no layer fuses, so each stream is
# a ViT of its own.
APART = dict(
    num_frames=2,
    image_size=32,
    tubelet_size=(2, 8, 8),
    spectrogram_frames=32,
    num_mel_bins=32,
    spectrogram_patch_size=8,
    fusion_layer=2,
)

# Built and run as compiled programs: eager layers would compile op by op.
vit_of = eqx.filter_jit(lambda key: nn.ViT(5, 8, **SIZES, image_size=32, key=key))
mbt_of = eqx.filter_jit(lambda key, **changes: model_file.MBT(3, **{**SIZES, **APART, **changes}, key=key))
cls_tokens = eqx.filter_jit(lambda model, inputs: model.features(inputs)["cls"])
vit_cls = eqx.filter_jit(lambda vit, image: vit.features(image)["encoder_out"][0])


def _inputs(key):
    k_frame, k_sound = jax.random.split(key)
    frame = jax.random.uniform(k_frame, (32, 32, 3))
    return frame, {"rgb": jnp.stack([frame, frame]), "spectrogram": jax.random.normal(k_sound, (32, 32))}


def test_each_stream_computes_the_vit(getkey):
    vit = vit_of(getkey())
    mbt = vit_init.mbt_from_vit(mbt_of(getkey()), vit)
    frame, inputs = _inputs(getkey())
    cls = cls_tokens(mbt, inputs)
    # Central-frame tubelets of a repeated frame are the ViT's patch tokens of it ...
    np.testing.assert_allclose(cls["rgb"], vit_cls(vit, frame), rtol=1e-4, atol=1e-5)
    # ... and a spectrogram is read as the grey image with it in every channel.
    grey = jnp.repeat(inputs["spectrogram"][:, :, None], 3, axis=-1)
    np.testing.assert_allclose(cls["spectrogram"], vit_cls(vit, grey), rtol=1e-4, atol=1e-5)


def test_from_a_google_checkpoint_by_config(getkey):
    """`mbt_from_image_vit`: on [0, 1] pixels, the RGB stream is the checkpoint's ViT on
    the pixels in [-1, 1], as it was trained; another spectrogram grid is resampled."""
    mbt = nn.create(
        "mbt_from_image_vit", num_classes=3, key=getkey(), backbone_weights=CHECKPOINT, backbone_num_classes=5,
        backbone_image_size=32, **SIZES, **{**APART, "spectrogram_frames": 64, "num_mel_bins": 16},
    )  # fmt: skip
    vit = nn.load_weights(vit_of(getkey()), CHECKPOINT)
    assert mbt.layers[0]["rgb"].mlp.gelu_approximate == vit.encoder.blocks[0].mlp.gelu_approximate
    frame, inputs = _inputs(getkey())
    inputs["spectrogram"] = jax.random.normal(getkey(), (64, 16))
    np.testing.assert_allclose(
        cls_tokens(mbt, inputs)["rgb"], vit_cls(vit, 2 * frame - 1), rtol=1e-4, atol=1e-5
    )
    assert mbt.tokenizers["spectrogram"].position.weight.shape == (1 + 8 * 2, 16)


def test_mismatched_models_are_refused(getkey):
    vit = vit_of(getkey())
    wider = mbt_of(getkey(), hidden_size=32)
    with pytest.raises(ValueError, match=r"`hidden_size` of the MBT \(=32\) must be the ViT's \(=16\)"):
        vit_init.mbt_from_vit(wider, vit)
    other_patches = mbt_of(getkey(), spectrogram_patch_size=4)
    with pytest.raises(
        ValueError, match=r"`spectrogram_patch_size` \(=\(4, 4\)\) must be the ViT's `patch_size`"
    ):
        vit_init.mbt_from_vit(other_patches, vit)
    with pytest.raises(
        ValueError, match=r"takes the arguments of `MBT` .* Received: unknown argument\(s\) 'patch_size'"
    ):
        nn.create("mbt_from_image_vit", num_classes=2, patch_size=16, key=getkey())
