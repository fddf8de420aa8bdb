"""MBT started from an image ViT's weights, as the paper starts it from ImageNet-21k.

Nagrani et al., "Attention Bottlenecks for Multimodal Fusion", NeurIPS 2021
(arXiv:2107.00135), section 4.2: both modalities' transformers are initialised from
the same ImageNet-21k ViT-Base; the RGB tubelet embedding is inflated from the 2-D
patch embedding as ViViT does (Arnab et al. 2021, central-frame initialisation), and
the spectrogram, a one-channel image, uses the patch embedding summed over the image's
channels (the same as feeding the spectrogram as a grey 3-channel image, as Scenic's
MBT does). Position embeddings are resampled to each modality's grid and, for RGB,
repeated over time.

Importing this file registers `mbt_from_image_vit` in `scenic_eqx.nn`: an MBT whose
`config.model.backbone_weights` names the ViT checkpoint.
"""

import inspect
import os
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from scenic_eqx import nn, run
from scenic_eqx.nn._posemb_resample import resample_posemb_grid

_model = run.import_file(os.path.join(os.path.dirname(__file__), "model.py"))
_MBT_ARGUMENTS = tuple(a for a in inspect.signature(_model.MBT).parameters if a not in ("num_classes", "key"))


def _vit_blocks(vit: nn.ViT) -> list:
    """The arrays of each of the ViT's blocks (`scan_layers` or not), as block pytrees."""
    blocks = eqx.filter(vit.encoder.blocks, eqx.is_array)
    if isinstance(blocks, tuple):
        return list(blocks)
    return [jax.tree.map(lambda a, i=i: a[i], blocks) for i in range(len(vit.encoder.drop_path_rates))]


def _sizes_of_vit(vit: nn.ViT) -> dict:
    block = vit.encoder.blocks if isinstance(vit.encoder.blocks, nn.EncoderBlock) else vit.encoder.blocks[0]
    return {
        "hidden_size": vit.embedding.weight.shape[0],
        "num_layers": len(vit.encoder.drop_path_rates),
        "num_heads": block.attention.num_heads,
        "mlp_dim": block.mlp.dense1.weight.shape[0],
        "gelu_approximate": block.mlp.gelu_approximate,
        "layer_norm_eps": vit.encoder.norm.eps,
    }


def _sizes_of_mbt(mbt) -> dict:
    block = next(iter(mbt.layers[0].values()))
    return {
        "hidden_size": mbt.norm.weight.shape[0],
        "num_layers": len(mbt.layers),
        "num_heads": block.attention.num_heads,
        "mlp_dim": block.mlp.dense1.weight.shape[0],
        "gelu_approximate": block.mlp.gelu_approximate,
        "layer_norm_eps": mbt.norm.eps,
    }


def _check_compatible(mbt, vit: nn.ViT) -> None:
    mbt_sizes, vit_sizes = _sizes_of_mbt(mbt), _sizes_of_vit(vit)
    for name, value in mbt_sizes.items():
        if value != vit_sizes[name]:
            raise ValueError(
                f"`{name}` of the MBT (={value!r}) must be the ViT's (={vit_sizes[name]!r}) to take "
                f"its weights. Received: mbt {name}={value!r}, vit {name}={vit_sizes[name]!r}."
            )
    patch = vit.embedding.patch_size
    for m, tokenizer in mbt.tokenizers.items():
        size = tokenizer.embedding.tubelet_size[1:] if m == "rgb" else tokenizer.embedding.patch_size
        if tuple(size) != tuple(patch):
            argument = "tubelet_size[1:]" if m == "rgb" else "spectrogram_patch_size"
            raise ValueError(
                f"The MBT's `{argument}` (={tuple(size)}) must be the ViT's `patch_size` (={patch}). "
                f"Received: {argument}={tuple(size)}, patch_size={patch}."
            )
    if vit.embedding.weight.shape[1] != 3:
        raise ValueError(f"The ViT must read RGB images. Received: {vit.embedding.weight.shape[1]} channels.")


def _with_arrays(target, source):
    """`target` (its static fields, dropout and stochastic depth) holding `source`'s arrays."""
    params, static = eqx.partition(target, eqx.is_array)
    arrays = eqx.filter(source, eqx.is_array)

    def take(like, value):
        if like.shape != value.shape:  # sizes are checked first; this guards the pairing
            raise ValueError(f"A ViT array of shape {value.shape} does not fit the MBT's {like.shape}.")
        return jnp.asarray(value, like.dtype)

    return eqx.combine(jax.tree.map(take, params, arrays), static)


def _position_table(tokenizer, vit: nn.ViT, grid: tuple[int, int], repeats: int) -> jax.Array:
    """`[1 + repeats * h * w, dim]`: the CLS row, then the ViT's grid resampled to `grid`, repeated."""
    if not isinstance(vit.pos_embedding, nn.LearnedPositionEmbedding):
        raise ValueError(
            "The ViT must have learned position embeddings (`posemb='learn'`). "
            f"Received: {type(vit.pos_embedding).__name__}."
        )
    table = np.asarray(vit.pos_embedding.weight)
    prefix = int(vit.cls_token is not None)
    patch = vit.embedding.patch_size
    vit_grid = (vit.image_size[0] // patch[0], vit.image_size[1] // patch[1])
    spatial = table[prefix:]
    if tuple(grid) != vit_grid:
        spatial = resample_posemb_grid(spatial, vit_grid, tuple(grid))
    cls_row = table[:1] if prefix else np.asarray(tokenizer.position.weight[:1])
    return jnp.asarray(
        np.concatenate([cls_row, np.tile(spatial, (repeats, 1))]), tokenizer.position.weight.dtype
    )


def _rgb_tokenizer(tokenizer, vit: nn.ViT):
    kernel = vit.embedding.weight  # [dim, 3, ph, pw]
    time = tokenizer.embedding.tubelet_size[0]
    # Central-frame initialisation: a tubelet of identical frames gets the ViT's token.
    tubelet = (
        jnp.zeros((*kernel.shape[:2], time, *kernel.shape[2:]), kernel.dtype).at[:, :, time // 2].set(kernel)
    )
    nt, nh, nw = tokenizer.embedding.grid(*tokenizer.input_shape[:3])
    return _with_embedding(tokenizer, vit, tubelet, _position_table(tokenizer, vit, (nh, nw), nt))


def _spectrogram_tokenizer(tokenizer, vit: nn.ViT):
    kernel = jnp.sum(vit.embedding.weight, axis=1, keepdims=True)  # a grey image: every channel the same
    pf, pm = tokenizer.embedding.patch_size
    grid = (tokenizer.input_shape[0] // pf, tokenizer.input_shape[1] // pm)
    return _with_embedding(tokenizer, vit, kernel, _position_table(tokenizer, vit, grid, 1))


def _with_embedding(tokenizer, vit: nn.ViT, kernel: jax.Array, positions: jax.Array):
    where = [lambda t: t.embedding.weight, lambda t: t.embedding.bias, lambda t: t.position.weight]
    values = [kernel, vit.embedding.bias, positions]
    if vit.cls_token is not None:
        where, values = where + [lambda t: t.cls_token], values + [vit.cls_token]
    for get, value in zip(where, values):
        tokenizer = eqx.tree_at(get, tokenizer, jnp.asarray(value, get(tokenizer).dtype))
    return tokenizer


def mbt_from_vit(mbt, vit: nn.ViT):
    """`mbt` with the weights of the image model `vit` in both modalities' transformers.

    Every layer of every modality gets the ViT's block of that depth (the modalities
    then train apart); the final norm is the ViT's; the tokenizers are inflated as the
    module docstring says; the bottleneck tokens and the head keep their initialisation.

    Arguments:
        mbt: the `MBT`, built with the ViT's `hidden_size`, `num_layers`, `num_heads`,
            `mlp_dim`, numerics (`gelu_approximate`, `layer_norm_eps`) and patch size
            (`tubelet_size[1:]` and `spectrogram_patch_size`).
        vit: the image model, with its (pretrained) weights.

    Returns:
        The MBT with the ViT's weights. Runs on concrete arrays (not under `jit`).
    """
    _check_compatible(mbt, vit)
    blocks = _vit_blocks(vit)
    layers = tuple(
        {m: _with_arrays(block, blocks[i]) for m, block in layer.items()}
        for i, layer in enumerate(mbt.layers)
    )
    tokenizers = {
        m: (_rgb_tokenizer if m == "rgb" else _spectrogram_tokenizer)(tokenizer, vit)
        for m, tokenizer in mbt.tokenizers.items()
    }
    mbt = eqx.tree_at(lambda model: (model.layers, model.tokenizers), mbt, (layers, tokenizers))
    return eqx.tree_at(lambda model: model.norm, mbt, _with_arrays(mbt.norm, vit.encoder.norm))


def fold_rgb_normalization(mbt, mean: Sequence[float], std: Sequence[float]):
    """`mbt` whose RGB embedding of `x` is the old embedding of `(x - mean) / std`.

    The ViT saw normalised pixels (Google's: [-1, 1], mean = std = 0.5) while the data
    pipelines give [0, 1]; the embedding is linear, so the map folds into it:
    `W ((x - m) / s) + b = (W / s) x + (b - (W / s) m)`, per channel.
    """
    weight = mbt.tokenizers["rgb"].embedding.weight  # [dim, channels, time, height, width]
    if len(mean) != weight.shape[1] or len(std) != weight.shape[1] or min(std) <= 0:
        raise ValueError(
            f"`backbone_input_mean` and `backbone_input_std` must have one value per channel "
            f"({weight.shape[1]}), the std positive. Received: mean={tuple(mean)}, std={tuple(std)}."
        )
    scaled = weight / jnp.asarray(std, weight.dtype)[None, :, None, None, None]
    bias = mbt.tokenizers["rgb"].embedding.bias - jnp.einsum(
        "dcthw,c->d", scaled, jnp.asarray(mean, weight.dtype)
    )
    embedding = lambda model: (
        model.tokenizers["rgb"].embedding.weight,
        model.tokenizers["rgb"].embedding.bias,
    )  # noqa: E731
    return eqx.tree_at(embedding, mbt, (scaled, bias))


def mbt_from_image_vit(
    num_classes: int,
    *,
    key: jax.Array,
    backbone_weights: str | None = None,
    backbone_num_classes: int = 21_843,
    backbone_representation_size: int | None = None,
    backbone_image_size: int = 224,
    backbone_input_mean: Sequence[float] | None = (0.5, 0.5, 0.5),
    backbone_input_std: Sequence[float] | None = (0.5, 0.5, 0.5),
    **mbt_arguments,
):
    """An `MBT(num_classes, **mbt_arguments)`, with an image ViT's weights if given.

    Arguments:
        num_classes: logits of the MBT.
        key: PRNG key (the MBT's fresh parts; the ViT's before loading).
        backbone_weights: path of the ViT checkpoint (Google `.npz`, timm or transformers
            `.safetensors`, as `nn.load_weights` reads), its widths the MBT's and its
            patches the MBT's tubelets' and spectrogram patches' size; `None`: the MBT's
            own random initialisation.
        backbone_num_classes, backbone_representation_size: the checkpoint's head and
            `pre_logits` sizes (its head is not used).
        backbone_image_size: the side of the checkpoint's images (its position grid).
        backbone_input_mean, backbone_input_std: the ViT's input normalisation of [0, 1]
            pixels, folded into the RGB embedding (`None`: none).
        **mbt_arguments: the arguments of `MBT`.
    """
    unknown = sorted(set(mbt_arguments) - set(_MBT_ARGUMENTS))
    if unknown:
        raise ValueError(
            f"`mbt_from_image_vit` takes the arguments of `MBT` ({', '.join(_MBT_ARGUMENTS)}) and its own. "
            f"Received: unknown argument(s) {', '.join(map(repr, unknown))}."
        )
    k_vit, k_mbt = jax.random.split(key)
    if backbone_weights is None:
        return _model.MBT(num_classes, **mbt_arguments, key=k_mbt)
    # The MBT's shape (nothing initialised) tells the ViT's architecture.
    shape = eqx.filter_eval_shape(_model.MBT, num_classes, **mbt_arguments, key=k_mbt)
    sizes = {k: v for k, v in _sizes_of_mbt(shape).items() if k not in ("gelu_approximate", "layer_norm_eps")}
    vit = nn.ViT(
        backbone_num_classes,
        patch_size=tuple(next(iter(shape.tokenizers.values())).embedding.weight.shape[-2:]),
        image_size=backbone_image_size,
        representation_size=backbone_representation_size,
        **sizes,
        key=k_vit,
    )
    vit = nn.load_weights(vit, backbone_weights)
    # The MBT computes as the checkpoint's model did: its GELU form and LayerNorm eps.
    numerics = {k: _sizes_of_vit(vit)[k] for k in ("gelu_approximate", "layer_norm_eps")}
    mbt = _model.MBT(num_classes, **{**mbt_arguments, **numerics}, key=k_mbt)
    mbt = mbt_from_vit(mbt, vit)
    if backbone_input_mean is not None and "rgb" in mbt.tokenizers:
        mbt = fold_rgb_normalization(mbt, backbone_input_mean, backbone_input_std)
    return mbt


nn.register("mbt_from_image_vit", mbt_from_image_vit, overwrite=True)
