"""Tokens of each modality: patches projected, a CLS token in front, learned positions added.

Nagrani et al., "Attention Bottlenecks for Multimodal Fusion", NeurIPS 2021
(arXiv:2107.00135), section 3.1: the RGB frames are cut into tubelets (ViViT's tubelet
embedding; a tubelet one frame long is ViT's patch embedding of every frame) and the
log-mel spectrogram, a `frames x mel` image, into non-overlapping 2-D patches (16x16 in
the paper). Each modality has its own CLS token and its own position embeddings.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn


def _with_cls(
    cls_token: Float[Array, "1 dim"], tokens: Float[Array, "tokens dim"]
) -> Float[Array, "tokens dim"]:
    return jnp.concatenate([cls_token.astype(tokens.dtype), tokens])


class RgbTokenizer(eqx.Module):
    """RGB frames to `1 + nt * nh * nw` tokens: CLS, then the tubelets time-major.

    Arguments:
        dim: size of each token.
        num_frames, image_size: the frames the model reads (`image_size`: `(height,
            width)`); each must divide by the tubelet's extent along it.
        tubelet_size: `(time, height, width)` of a tubelet.
        in_channels: channels of a frame.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: nn.TubeletEmbedding
    cls_token: Float[Array, "1 dim"]
    position: nn.LearnedPositionEmbedding
    input_shape: tuple[int, int, int, int] = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        num_frames: int,
        image_size: tuple[int, int],
        tubelet_size: tuple[int, int, int],
        in_channels: int = 3,
        key: PRNGKeyArray,
    ):
        k_embedding, k_position = jax.random.split(key)
        self.embedding = nn.TubeletEmbedding(in_channels, dim, tubelet_size, key=k_embedding)
        nt, nh, nw = self.embedding.grid(num_frames, *image_size)
        self.cls_token = jnp.zeros((1, dim))
        self.position = nn.LearnedPositionEmbedding(1 + nt * nh * nw, dim, key=k_position)
        self.input_shape = (num_frames, *image_size, in_channels)

    @jaxtyped(typechecker=beartype)
    def __call__(self, rgb: Float[Array, "time height width channels"]) -> Float[Array, "tokens dim"]:
        """The tokens of one clip `[time, height, width, channels]`."""
        return self.position(_with_cls(self.cls_token, self.embedding(rgb)))


class SpectrogramTokenizer(eqx.Module):
    """A log-mel spectrogram to `1 + (frames / pf) * (mel / pm)` tokens: CLS, then the
    patches in row-major order (time-major).

    Arguments:
        dim: size of each token.
        num_frames: spectrogram frames (time steps) the model reads.
        num_mel_bins: mel bins of each frame.
        patch_size: `(frames, mel)` of a patch; must divide both sizes.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: nn.PatchEmbedding
    cls_token: Float[Array, "1 dim"]
    position: nn.LearnedPositionEmbedding
    input_shape: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        num_frames: int,
        num_mel_bins: int,
        patch_size: tuple[int, int],
        key: PRNGKeyArray,
    ):
        k_embedding, k_position = jax.random.split(key)
        self.embedding = nn.PatchEmbedding(1, dim, patch_size, key=k_embedding)
        pf, pm = self.embedding.patch_size
        if num_frames % pf or num_mel_bins % pm:
            raise ValueError(
                f"The spectrogram's size, `spectrogram_frames` x `num_mel_bins`, must divide by "
                f"`spectrogram_patch_size` (={pf}x{pm}). Received: {num_frames}x{num_mel_bins}."
            )
        self.cls_token = jnp.zeros((1, dim))
        num_patches = (num_frames // pf) * (num_mel_bins // pm)
        self.position = nn.LearnedPositionEmbedding(1 + num_patches, dim, key=k_position)
        self.input_shape = (num_frames, num_mel_bins)

    @jaxtyped(typechecker=beartype)
    def __call__(self, spectrogram: Float[Array, "frames mel"]) -> Float[Array, "tokens dim"]:
        """The tokens of one spectrogram `[frames, mel]`, as a one-channel image."""
        return self.position(_with_cls(self.cls_token, self.embedding(spectrogram[:, :, None])))
