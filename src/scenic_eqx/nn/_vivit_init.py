"""A ViViT started from an image ViT's weights (Arnab et al. 2021, ViViT, section 3.4).

"Initialisation by leveraging pretrained models": the transformer blocks come from the
image model unchanged; the position embeddings are repeated over time; the tubelet
embedding is inflated from the 2-D patch embedding, either by "central frame
initialisation" (the image kernel at the central time index, zeros elsewhere: at
initialisation every tubelet token is the image model's token of its central frame) or
by "filter inflation" (the image kernel replicated over time and divided by its length:
the token of the tubelet's mean frame), after Carreira & Zisserman 2017 (I3D).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._encoder import Encoder, EncoderBlock
from ._posemb_resample import resample_posemb_grid
from ._position_embedding import LearnedPositionEmbedding, posemb_sincos_2d
from ._vit import ViT
from ._vivit import ViViT

TUBELET_INITS = ("central_frame", "average")


def vivit_from_vit(vivit: ViViT, vit: ViT, *, tubelet_init: str = "central_frame") -> ViViT:
    """`vivit` with the weights of the image model `vit` (Arnab et al. 2021, section 3.4).

    The usual start of a video model (the paper's are initialised from ImageNet-21k or
    JFT ViTs):

    ```python
    vit = nn.load_weights(nn.create("vit_b16", num_classes=21843, key=k1), "vit_b16_in21k.npz")
    vivit = nn.create("vivit_b16x2", num_classes=400, attention_type="factorized_encoder",
                      gelu_approximate=True, key=k2)   # Google's checkpoints use tanh GELU
    vivit = nn.vivit_from_vit(vivit, vit)
    ```

    What is taken from `vit`:

    - `embedding`: the `[dim, channels, ph, pw]` patch kernel becomes the
      `[dim, channels, pt, ph, pw]` tubelet kernel by `tubelet_init` (the bias is
      copied). `"central_frame"`: the kernel at time index `pt // 2`, zeros elsewhere.
      `"average"` (filter inflation): the kernel at every time index, divided by `pt`.
      Either way a tubelet of `pt` identical frames gets the ViT's token of that frame.
    - `pos_embedding`: the ViT's grid of spatial embeddings, bilinearly resampled
      (`resample_posemb_grid`) when the ViViT's frames give another grid, then repeated
      for every time index (`"spacetime"`) or used for every frame
      (`"factorized_encoder"`, whose spatial encoder runs per frame). A fixed sine-cosine
      ViT gives its table. The class token's row, and `cls_token`, come from the ViT
      when both have a class token; otherwise the ViViT keeps its own.
    - `encoder` (the spatial encoder of Model 2): every block and the final norm, in the
      ViViT's layout (`scan_layers` may differ). The ViViT keeps its dropout and
      stochastic depth rates.
    - `head`: copied only when the ViT has no `pre_logits` and its head has the ViViT's
      shape; a head of another class count (the usual case) stays the ViViT's own.

    Model 2's `temporal_encoder`, `temporal_pos_embedding` and `temporal_cls_token`
    keep their fresh initialisation, as in the paper; so does a MAP head or a
    `pre_logits` layer of the ViT, which the ViViT lacks.

    Arguments:
        vivit: the video model, built with the ViT's `hidden_size`, `num_layers`,
            `num_heads`, `mlp_dim`, input channels, spatial patch size
            (`tubelet_size[1:]`) and numerics (`gelu_approximate`, `layer_norm_eps`:
            `load_weights` sets the ViT's to its checkpoint's).
        vit: the image model, with its (pretrained) weights.
        tubelet_init: `"central_frame"` (the paper's best, its default) or
            `"average"` (filter inflation).

    Returns:
        The ViViT with the ViT's weights, in the ViViT's dtypes. Runs on the host, on
        concrete arrays (not under `jit`).

    Raises:
        ValueError: an unknown `tubelet_init`, or a ViViT whose sizes or numerics are
            not the ViT's (the message names the argument and both values).
    """
    if tubelet_init not in TUBELET_INITS:
        raise ValueError(f"`tubelet_init` must be one of {TUBELET_INITS}. Received: {tubelet_init!r}.")
    _check_compatible(vivit, vit)
    kernel = _tubelet_kernel(vit.embedding.weight, vivit.embedding.tubelet_size[0], tubelet_init)
    replaced = [
        (lambda m: m.embedding.weight, kernel),
        (lambda m: m.embedding.bias, vit.embedding.bias),
        (lambda m: m.pos_embedding.weight, _position_table(vivit, vit)),
        (lambda m: m.encoder, _encoder_with_weights(vivit.encoder, vit.encoder)),
    ]
    if vivit.cls_token is not None and vit.cls_token is not None:
        replaced.append((lambda m: m.cls_token, vit.cls_token))
    if vit.pre_logits is None and vit.head.weight.shape == vivit.head.weight.shape:
        replaced += [(lambda m: m.head.weight, vit.head.weight), (lambda m: m.head.bias, vit.head.bias)]
    for where, value in replaced:
        like = where(vivit)
        if eqx.is_array(value):
            value = jnp.asarray(value, like.dtype)
        vivit = eqx.tree_at(where, vivit, value)
    return vivit


def _first_block(encoder: Encoder) -> EncoderBlock:
    return encoder.blocks if isinstance(encoder.blocks, EncoderBlock) else encoder.blocks[0]


def _sizes(model: ViT | ViViT) -> dict[str, object]:
    """The sizes and numerics that the ViT and the ViViT must share, by argument name."""
    block = _first_block(model.encoder)
    return {
        "hidden_size": model.embedding.weight.shape[0],
        "in_channels": model.embedding.weight.shape[1],
        "num_layers": len(model.encoder.drop_path_rates),
        "num_heads": block.attention.num_heads,
        "mlp_dim": block.mlp.dense1.weight.shape[-2],
        "gelu_approximate": block.mlp.gelu_approximate,
        "layer_norm_eps": model.encoder.norm.eps,
    }


def _check_compatible(vivit: ViViT, vit: ViT) -> None:
    if not isinstance(vivit, ViViT) or not isinstance(vit, ViT):
        raise ValueError(
            "`vivit_from_vit` takes a `ViViT` and a `ViT`. "
            f"Received: vivit={type(vivit).__name__}, vit={type(vit).__name__}."
        )
    video, image = _sizes(vivit), _sizes(vit)
    for name in video:
        if video[name] != image[name]:
            raise ValueError(
                f"`{name}` of the ViViT (={video[name]!r}) must be the ViT's (={image[name]!r}) "
                f"to take its weights: build the ViViT with `{name}={image[name]!r}`. "
                f"Received: vivit {name}={video[name]!r}, vit {name}={image[name]!r}."
            )
    tubelet_patch, patch = vivit.embedding.tubelet_size[1:], vit.embedding.patch_size
    if tubelet_patch != patch:
        raise ValueError(
            f"The spatial size of the ViViT's `tubelet_size` (={tubelet_patch}) must be the ViT's "
            f"`patch_size` (={patch}). Received: tubelet_size={vivit.embedding.tubelet_size}, "
            f"patch_size={patch}."
        )


def _tubelet_kernel(patch_kernel: jax.Array, tubelet_time: int, tubelet_init: str) -> jax.Array:
    """`[dim, channels, tubelet_time, ph, pw]` from the ViT's `[dim, channels, ph, pw]`."""
    if tubelet_init == "average":
        return jnp.repeat(patch_kernel[:, :, None], tubelet_time, axis=2) / tubelet_time
    kernel = jnp.zeros((*patch_kernel.shape[:2], tubelet_time, *patch_kernel.shape[2:]), patch_kernel.dtype)
    return kernel.at[:, :, tubelet_time // 2].set(patch_kernel)


def _vit_position_table(vit: ViT) -> np.ndarray:
    """The ViT's `[prefix + grid_h * grid_w, dim]` position embeddings, prefix rows first."""
    embedding = vit.pos_embedding
    if isinstance(embedding, LearnedPositionEmbedding):
        return np.asarray(embedding.weight)
    table = posemb_sincos_2d(embedding.height, embedding.width, embedding.dim)
    return np.pad(table, ((embedding.num_prefix_tokens, 0), (0, 0)))


def _position_table(vivit: ViViT, vit: ViT) -> np.ndarray:
    """The ViViT's position embeddings from the ViT's, as `vivit_from_vit` describes."""
    table = _vit_position_table(vit)
    vit_prefix = int(vit.cls_token is not None)
    patch = vit.embedding.patch_size
    vit_grid = (vit.image_size[0] // patch[0], vit.image_size[1] // patch[1])
    num_time, *grid = vivit.embedding.grid(*vivit.input_size)
    spatial = table[vit_prefix:]
    if tuple(grid) != vit_grid:
        spatial = resample_posemb_grid(spatial, vit_grid, tuple(grid))
    if vivit.temporal_encoder is None:  # Model 1: one table over all tubelets, time-major
        spatial = np.tile(spatial, (num_time, 1))
    if vivit.cls_token is None:
        return spatial
    cls_row = table[:1] if vit_prefix else np.asarray(vivit.pos_embedding.weight[:1])
    return np.concatenate([cls_row.astype(spatial.dtype), spatial])


def _blocks_arrays(source: Encoder, scanned: bool) -> list[jax.Array]:
    """The arrays of `source`'s blocks in the layout of a (`scanned` or not) encoder."""
    blocks = eqx.filter(source.blocks, eqx.is_array)
    if source.scan_layers and not scanned:
        num_layers = len(source.drop_path_rates)
        blocks = tuple(jax.tree.map(lambda a, i=i: a[i], blocks) for i in range(num_layers))
    elif scanned and not source.scan_layers:
        blocks = jax.tree.map(lambda *layers: jnp.stack(layers), *blocks)
    return jax.tree.leaves(blocks)


def _encoder_with_weights(target: Encoder, source: Encoder) -> Encoder:
    """`target` (its layout, dropout and stochastic depth) with `source`'s weights."""
    arrays = iter(
        _blocks_arrays(source, target.scan_layers) + jax.tree.leaves(eqx.filter(source.norm, eqx.is_array))
    )
    leaves, treedef = jax.tree.flatten(target)
    filled = []
    for leaf in leaves:
        if eqx.is_array(leaf):
            value = next(arrays)
            # Same sizes (checked) and the same module classes give the same shapes in
            # the same order; this guards the pairing all the same.
            if value.shape != leaf.shape:
                raise ValueError(
                    f"The ViT's encoder arrays must pair with the ViViT's. Received: shapes "
                    f"{tuple(value.shape)} (ViT) and {tuple(leaf.shape)} (ViViT)."
                )
            leaf = jnp.asarray(value, leaf.dtype)
        filled.append(leaf)
    return jax.tree.unflatten(treedef, filled)
