"""`vivit_from_vit`: a ViViT holding an image ViT's weights computes what the ViT computes
on a video that does not move (Arnab et al. 2021, section 3.4)."""

import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn import ViT, ViViT, vivit_from_vit
from scenic_eqx.nn._posemb_resample import resample_posemb_grid

# 8x8 frames of 4x4 patches: a 2x2 grid; width 16, 2 blocks of 2 heads.
WIDTHS = dict(hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32)
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def vit(key, **kw):
    return ViT(**{"num_classes": 3, "patch_size": 4, "image_size": 8, **WIDTHS, **kw}, key=key)


def vivit(key, **kw):
    arguments = {"num_classes": 3, "tubelet_size": (2, 4, 4), "num_frames": 4, "image_size": 8, **WIDTHS}
    return ViViT(**{**arguments, **kw}, key=key)


def still_video(frame, num_frames: int):
    """A video whose every frame is `frame`."""
    return jnp.broadcast_to(frame, (num_frames, *frame.shape))


@pytest.mark.parametrize("tubelet_init", ["central_frame", "average"])
def test_tubelets_of_a_still_video_are_the_vit_patch_tokens(getkey, tubelet_init):
    image_model = vit(getkey())
    video_model = vivit_from_vit(vivit(getkey(), tubelet_size=(3, 4, 4), num_frames=6), image_model,
                                 tubelet_init=tubelet_init)  # fmt: skip
    frame = jax.random.normal(getkey(), (8, 8, 3))
    tokens = video_model.embedding(still_video(frame, 6))  # 2 time indices x 4 patches
    expected = jnp.tile(image_model.embedding(frame), (2, 1))
    np.testing.assert_allclose(tokens, expected, rtol=1e-5, atol=1e-5)


def test_central_frame_tokens_see_only_the_central_frame(getkey):
    video_model = vivit_from_vit(vivit(getkey(), tubelet_size=(3, 4, 4), num_frames=3), vit(getkey()))
    video = jax.random.normal(getkey(), (3, 8, 8, 3))
    changed = video.at[0].set(0.0).at[2].mul(-5.0)  # every frame but the central one
    np.testing.assert_array_equal(video_model.embedding(video), video_model.embedding(changed))
    assert not np.allclose(video_model.embedding(video), video_model.embedding(video.at[1].set(0.0)))


@pytest.mark.parametrize("scanned", [(False, False), (True, False), (False, True)])
def test_one_frame_spacetime_vivit_gives_the_vit_logits(getkey, scanned):
    vit_scanned, vivit_scanned = scanned
    image_model = vit(getkey(), scan_layers=vit_scanned)
    one_frame = vivit(getkey(), tubelet_size=(1, 4, 4), num_frames=1, scan_layers=vivit_scanned)
    video_model = vivit_from_vit(one_frame, image_model)
    frame = jax.random.normal(getkey(), (8, 8, 3))
    # The same class count: the head is copied too.
    np.testing.assert_allclose(video_model(frame[None]), image_model(frame), rtol=1e-5, atol=1e-5)


def test_spacetime_gap_vivit_on_a_still_video_gives_the_vit_logits(getkey):
    # Without a class token, every token of a still video appears once per time index:
    # attention to k copies of a key weighs it k times in the numerator and the
    # denominator alike, and the mean over tokens is unchanged, so the logits are the
    # ViT's exactly, whatever the number of frames.
    image_model = vit(getkey(), classifier="gap")
    video_model = vivit_from_vit(vivit(getkey(), classifier="gap", num_frames=6), image_model)
    frame = jax.random.normal(getkey(), (8, 8, 3))
    np.testing.assert_allclose(video_model(still_video(frame, 6)), image_model(frame), rtol=1e-5, atol=1e-5)


def test_factorised_encoder_spatial_path_is_the_vit_and_temporal_encoder_stays_fresh(getkey):
    image_model = vit(getkey())
    fresh = vivit(getkey(), attention_type="factorized_encoder", num_temporal_layers=1)
    video_model = vivit_from_vit(fresh, image_model)
    frame = jax.random.normal(getkey(), (8, 8, 3))
    # One time index through the spatial encoder, as `ViViT.features` runs it per frame.
    tokens = video_model.embedding(still_video(frame, 2))
    h = video_model.pos_embedding(jnp.concatenate([video_model.cls_token, tokens]))
    np.testing.assert_allclose(
        video_model.encoder(h), image_model.features(frame)["encoder_out"], rtol=1e-5, atol=1e-5
    )
    temporal = lambda m: (m.temporal_encoder, m.temporal_pos_embedding, m.temporal_cls_token)
    assert eqx.tree_equal(temporal(video_model), temporal(fresh))


def test_position_grid_is_resampled_and_another_head_is_kept(getkey):
    image_model = vit(getkey(), image_size=16, num_classes=5)  # a 4x4 grid
    fresh = vivit(getkey())  # a 2x2 grid, 2 time indices
    video_model = vivit_from_vit(fresh, image_model)
    table = np.asarray(image_model.pos_embedding.weight)
    spatial = resample_posemb_grid(table[1:], (4, 4), (2, 2))
    expected = np.concatenate([table[:1], spatial, spatial])
    np.testing.assert_allclose(video_model.pos_embedding.weight, expected, rtol=1e-6)
    assert eqx.tree_equal(video_model.head, fresh.head)
    np.testing.assert_array_equal(video_model.cls_token, image_model.cls_token)


def test_sincos_vit_without_class_token_gives_its_table_and_the_vivit_keeps_its_class_row(getkey):
    image_model = vit(getkey(), posemb="sincos2d", classifier="gap")
    fresh = vivit(getkey())  # a class token, 2 time indices of a 2x2 grid
    video_model = vivit_from_vit(fresh, image_model)
    table = nn.posemb_sincos_2d(2, 2, 16)
    np.testing.assert_allclose(video_model.pos_embedding.weight[1:], np.concatenate([table, table]))
    np.testing.assert_array_equal(video_model.pos_embedding.weight[0], fresh.pos_embedding.weight[0])
    np.testing.assert_array_equal(video_model.cls_token, fresh.cls_token)


def test_google_checkpoint_through_load_weights(getkey):
    """The user's path: a ViT from a Google `.npz`, then the ViViT from the ViT."""
    kw = dict(num_classes=5, patch_size=8, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32)
    image_model = nn.load_weights(ViT(**kw, image_size=32, key=getkey()), FIXTURES / "google_vit.npz")
    video_kw = dict(kw, tubelet_size=(1, 8, 8), num_frames=1, image_size=32)
    del video_kw["patch_size"]
    with pytest.raises(
        ValueError, match=r"`gelu_approximate` of the ViViT \(=False\) must be the ViT's \(=True\)"
    ):
        vivit_from_vit(ViViT(**video_kw, key=getkey()), image_model)
    video_model = vivit_from_vit(ViViT(**video_kw, gelu_approximate=True, key=getkey()), image_model)
    frame = jax.random.uniform(getkey(), (32, 32, 3))
    np.testing.assert_allclose(video_model(frame[None]), image_model(frame), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(hidden_size=8, mlp_dim=32), r"`hidden_size` of the ViViT \(=8\) must be the ViT's \(=16\)"),
        (dict(num_layers=3), r"`num_layers` of the ViViT \(=3\) must be the ViT's \(=2\)"),
        (dict(num_heads=4), r"`num_heads` of the ViViT \(=4\) must be the ViT's \(=2\)"),
        (dict(mlp_dim=64), r"`mlp_dim` of the ViViT \(=64\) must be the ViT's \(=32\)"),
        (dict(in_channels=1), r"`in_channels` of the ViViT \(=1\) must be the ViT's \(=3\)"),
        (dict(layer_norm_eps=1e-12), r"`layer_norm_eps` of the ViViT \(=1e-12\) must be the ViT's \(=1e-06\)"),
        (dict(tubelet_size=(2, 2, 2)), r"`tubelet_size` \(=\(2, 2\)\) must be the ViT's `patch_size` \(=\(4, 4\)\)"),
    ],
)  # fmt: skip
def test_mismatched_sizes_are_named_with_both_values(getkey, change, message):
    with pytest.raises(ValueError, match=message):
        vivit_from_vit(vivit(getkey(), **change), vit(getkey()))


def test_unknown_tubelet_init_and_wrong_models_are_refused(getkey, without_annotation_checks):
    with pytest.raises(ValueError, match=r"`tubelet_init` must be one of .* Received: 'inflate'"):
        vivit_from_vit(vivit(getkey()), vit(getkey()), tubelet_init="inflate")
    with pytest.raises(ValueError, match=r"takes a `ViViT` and a `ViT`. Received: vivit=ViT, vit=ViT"):
        vivit_from_vit(vit(getkey()), vit(getkey()))
