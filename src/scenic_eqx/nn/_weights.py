"""Pretrained weights, matched by name: `load_weights(model, path)`.

Each model family keeps, beside it, a table of renaming rules per checkpoint source
(`_vit_weights.py`, `_mixer_weights.py`, `_resnet_weights.py`) from the source's keys to
our module paths (`encoder.blocks[0].norm1.weight`), with the layout change of each
array; `_weights_google.py` and `_weights_torch.py` read the files. The model's arrays are then replaced path by path,
never by position, and every array is checked: a parameter the model has and the file
lacks, or the reverse, is named; so is a shape that differs.
"""

import os
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _weights_google as google, _weights_torch as torch_formats
from ._clip import CLIP
from ._clip_weights import CLIP_WEIGHTS, OPENAI_LAYER_NORM_EPS
from ._layer_norm import LayerNorm
from ._mixer import MlpMixer
from ._mixer_weights import MIXER_WEIGHTS
from ._mlp_block import MlpBlock
from ._resnet import ResNet
from ._resnet_weights import RESNET_WEIGHTS
from ._vit import ViT
from ._vit_weights import VIT_WEIGHTS
from ._weights_rules import FamilyWeights, apply_rules


def load_weights(
    model: eqx.Module,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    allow_nonfinite: bool = False,
) -> Any:
    """Loads a published checkpoint into `model`, matching parameters by name.

    Formats, told apart by the file's extension and key names:

    - Google Flax `.npz`: ViT (original/AugReg layout, big_vision's per-block and
      stacked `scan=True` layouts, MAP heads) and MLP-Mixer.
    - `.safetensors` from timm (ViT, Mixer, ResNet; torchvision's ResNet names are
      timm's) or Hugging Face transformers (`ViTForImageClassification`/`ViTModel`,
      `ResNetForImageClassification`/`ResNetModel`, `CLIPModel`; a `config.json`
      beside the file is read for the activation and LayerNorm epsilon, and checked
      for ResNet and CLIP). `path` may be the directory `save_pretrained` wrote.
    - CLIP from OpenAI or open_clip: a state dict as `.safetensors`, or as torch's
      `.pt`/`.bin`/`.pth` (read with `torch.load(weights_only=True)`; needs PyTorch).
      See `_clip_weights.py` for what is checked.

    The model is also made to compute as the checkpoint's source did: GELU is set to
    the tanh approximation for Google checkpoints and to the exact form for timm and
    transformers, and LayerNorm eps to 1e-6 (Google, timm) or transformers' configured
    value (1e-12 by default), whatever the model was built with.

    A checkpoint whose head has another number of classes leaves the model's own,
    freshly initialised `head` in place, with a warning: the usual start of fine-tuning.
    A model built without a head (`ResNet(None, ...)`, a detector's backbone) ignores
    the checkpoint's.
    Learned position embeddings of another grid size are resampled bilinearly
    (`resample_posemb_grid`; the class-token row is kept), as for fine-tuning at a
    higher resolution.

    BatchNorm running statistics (ResNet) go into the initial value of each
    `eqx.nn.StateIndex`, so the state to use is `eqx.nn.State(model)` of the returned
    model. Build the model directly (`ResNet(...)` or `create(...)`), not with
    `eqx.nn.make_with_state`, which strips those initial values.

    Arguments:
        model: a `ViT`, `MlpMixer`, `ResNet` or `CLIP`, built with the checkpoint's
            architecture (`create("vit_b16", num_classes=..., key=...)`).
        path: the checkpoint file (or a directory holding `model.safetensors`).
        strict: if `True`, a parameter of the model missing from the file, or an
            array of the file with no place in the model, is an error; if `False`, a
            warning (missing parameters keep their initial values, extra arrays are
            ignored). A shape mismatch is always an error.
        allow_nonfinite: load NaN or infinite weights; by default they are refused (a
            diverged or corrupted checkpoint would otherwise give NaN logits silently).

    Returns:
        The model with the checkpoint's weights (and numerics).

    Loading executes nothing from the file: `.npz` files are read without unpickling
    (an object array is refused), `.safetensors` hold raw arrays only, and torch files
    go through torch's restricted (`weights_only`) unpickler.

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: on an unsupported, truncated or corrupted file, an unsupported
            model, missing or unexpected parameters (with `strict=True`), a shape
            mismatch or non-finite weights; the message names the path and each one.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.safetensors")):
        path = os.path.join(path, "model.safetensors")  # a transformers `save_pretrained` directory
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` must be an existing checkpoint file. Received: {path!r}.")
    converted, unmatched, origins, numerics, description, family = _convert(model, path)
    if numerics is not None:
        model = _set_numerics(model, *numerics)
    if family.fit is not None:
        converted = family.fit(model, converted, path)
    return _assign(model, converted, unmatched, origins, path, description, strict, allow_nonfinite)


# Each family's conversion lives beside it (`_vit_weights.py`, ...); a subclass of a
# family's model loads as the family does.
_FAMILIES: dict[type, FamilyWeights] = {
    ViT: VIT_WEIGHTS,
    MlpMixer: MIXER_WEIGHTS,
    ResNet: RESNET_WEIGHTS,
    CLIP: CLIP_WEIGHTS,
}
_SOURCES = {
    "google": "Google .npz",
    "timm": "timm .safetensors",
    "transformers": "transformers .safetensors",
    "openai": "CLIP state dict (OpenAI, open_clip)",
}
_TORCH_PICKLES = (".pt", ".pth", ".bin")


def _family(model: eqx.Module) -> FamilyWeights | None:
    return next((_FAMILIES[cls] for cls in type(model).__mro__ if cls in _FAMILIES), None)


def _supported() -> str:
    return "; ".join(
        f"{weights.family} from {', '.join(_SOURCES[source] for source in weights.rules)}"
        for weights in _FAMILIES.values()
    )


def _convert(model: eqx.Module, path: str):
    """Renames the file's arrays to module paths by the rules of the model's family."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".npz", ".safetensors", *_TORCH_PICKLES):
        raise ValueError(
            "`path` must be a Google `.npz`, a timm/transformers/OpenAI `.safetensors` or a torch "
            f"`.pt`/`.pth`/`.bin` checkpoint. Received: {path!r}."
        )
    family = _family(model)
    source = "google" if extension == ".npz" else None
    arrays: dict[str, np.ndarray] = {}
    if extension in _TORCH_PICKLES:
        arrays, source = torch_formats.read_torch_pickle(path)
    elif source is None:
        arrays, source = torch_formats.read_safetensors(path)
    if family is None or source not in family.rules:
        kind = type(model).__name__
        raise ValueError(
            f"Cannot load a {_SOURCES[source]} checkpoint into a {kind}: supported are "
            f"{_supported()}. Received: a {kind} and {path!r}."
        )
    origins: dict[str, str] = {}
    if source == "google":
        arrays, origins = google.read_npz(path, family.npz_root)
        numerics = (google.GELU_APPROXIMATE, google.LAYER_NORM_EPS)
    elif source == "timm":
        numerics = (torch_formats.TIMM_GELU_APPROXIMATE, torch_formats.TIMM_LAYER_NORM_EPS)
    elif source == "openai":  # PyTorch's LayerNorm; the activation is not recorded: the model's
        numerics = (False, OPENAI_LAYER_NORM_EPS)
    else:
        config = torch_formats.transformers_config(path)
        numerics = family.transformers_config(config, path) if family.transformers_config else None
    converted, unmatched = apply_rules(arrays, family.rules[source])
    numerics = numerics if family.sets_numerics else None
    return converted, unmatched, origins, numerics, _SOURCES[source], family


def _set_numerics(
    model: Any, gelu_approximate: bool, layer_norm_eps: float, quick_gelu: bool | None = None
) -> Any:
    """`model` with every `MlpBlock`'s GELU form and every `LayerNorm`'s eps set.

    `quick_gelu` (CLIP's activation) is set too when given, else each block keeps its own.
    """

    def rebuild(node):
        if isinstance(node, MlpBlock) and (
            node.gelu_approximate != gelu_approximate
            or (quick_gelu is not None and node.quick_gelu != quick_gelu)
        ):
            # Built abstractly (no random init), then given the old layers.
            mlp_dim, dim = node.dense1.weight.shape[-2:]
            fresh = eqx.filter_eval_shape(
                MlpBlock,
                dim,
                mlp_dim,
                dropout_rate=node.dropout.p,
                gelu_approximate=gelu_approximate,
                quick_gelu=node.quick_gelu if quick_gelu is None else quick_gelu,
                key=jax.random.key(0),
            )
            return eqx.tree_at(
                lambda m: (m.dense1, m.dense2, m.dropout),
                fresh,
                (node.dense1, node.dense2, node.dropout),
            )
        if isinstance(node, LayerNorm) and node.eps != layer_norm_eps:
            arrays = [a for a in (node.weight, node.bias) if a is not None]
            fresh = LayerNorm(
                arrays[0].shape[-1] if arrays else 1,
                eps=layer_norm_eps,
                use_weight=node.weight is not None,
                use_bias=node.bias is not None,
                dtype=arrays[0].dtype if arrays else None,
            )
            return eqx.tree_at(lambda n: [a for a in (n.weight, n.bias) if a is not None], fresh, arrays)
        return node

    return jax.tree_util.tree_map(rebuild, model, is_leaf=lambda x: isinstance(x, (MlpBlock, LayerNorm)))


def _path_name(path: tuple) -> str:
    """`encoder.blocks[0].norm1.weight` from a `jax.tree_util` key path."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(f".{key.name}")
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(f"[{key.idx}]")
        else:
            parts.append(f"[{key.key!r}]")
    return "".join(parts).removeprefix(".")


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:12])
    return shown + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "")


def _assign(model, converted, unmatched, origins, path, description, strict, allow_nonfinite):
    """Replaces the model's arrays by name, after checking names and shapes."""
    is_index = lambda x: isinstance(x, eqx.nn.StateIndex)
    for index in jax.tree_util.tree_leaves(model, is_leaf=is_index):
        if is_index(index) and not jax.tree_util.tree_leaves(index.init):
            raise ValueError(
                "`model` must hold its initial state (build it directly, load the weights, "
                "then take `state = eqx.nn.State(model)`). Received: a model whose initial "
                "state was removed (by `eqx.nn.make_with_state`?)."
            )
    flat, treedef = jax.tree_util.tree_flatten_with_path(model)
    names = [_path_name(p) for p, _ in flat]
    params = {n: leaf for n, (_, leaf) in zip(names, flat) if _is_param(leaf)}
    origin = lambda key: origins.get(key, key)

    head = ("head.weight", "head.bias")
    if getattr(model, "head", ()) is None:
        # A model built without a head (a detector's backbone) takes the features only.
        converted = {k: v for k, v in converted.items() if k not in head}
    ckpt_head, model_head = converted.get(head[0], (None,))[0], params.get(head[0])
    if (
        ckpt_head is not None
        and model_head is not None
        and ckpt_head.ndim == 2
        and ckpt_head.shape[0] != model_head.shape[0]
        and ckpt_head.shape[1:] == model_head.shape[1:]
    ):
        warnings.warn(
            f"Checkpoint {path!r} has a {ckpt_head.shape[0]}-class head and the model "
            f"{model_head.shape[0]} classes: the model keeps its own freshly initialised "
            "`head`.",
            stacklevel=3,
        )
        converted = {k: v for k, v in converted.items() if k not in head}
    else:
        head = ()

    missing = [n for n in params if n not in converted and n not in head]
    unexpected = [origin(k) for k in unmatched] + [
        f"{origin(key)} (as `{name}`)" for name, (_, key) in converted.items() if name not in params
    ]
    problems = []
    if missing:
        problems.append(f"model parameters missing from the file: {_listing(missing)}")
    if unexpected:
        problems.append(f"checkpoint keys the model has no place for: {_listing(unexpected)}")
    if problems and strict:
        raise ValueError(
            f"Checkpoint {path!r} ({description}) must match the {type(model).__name__}'s "
            "parameters by name: check the model's architecture arguments, or pass "
            "`strict=False` to keep missing parameters' initial values and ignore extra "
            "arrays. Received: " + "; ".join(problems) + "."
        )
    for problem in problems:
        warnings.warn(f"Checkpoint {path!r}: {problem}.", stacklevel=3)

    mismatched = [
        f"`{n}` (checkpoint key {origin(converted[n][1])!r}): checkpoint "
        f"{tuple(converted[n][0].shape)}, model {tuple(params[n].shape)}"
        for n in params
        if n in converted and tuple(converted[n][0].shape) != tuple(params[n].shape)
    ]
    if mismatched:
        raise ValueError(
            f"Checkpoint {path!r} must have the shapes of the {type(model).__name__}'s "
            "parameters. Received: " + "; ".join(mismatched) + "."
        )
    if not allow_nonfinite:
        _check_finite([(n, *converted[n]) for n in params if n in converted], path, origin)
    leaves = [
        jnp.asarray(converted[n][0], dtype=leaf.dtype) if n in params and n in converted else leaf
        for n, (_, leaf) in zip(names, flat)
    ]
    abstract = [n for n, leaf in zip(names, leaves) if isinstance(leaf, jax.ShapeDtypeStruct)]
    if abstract:
        raise ValueError(
            f"`model` must be concrete to keep the initial values of parameters that {path!r} "
            f"lacks: {_listing(abstract)}. Received: an abstract model (built with "
            "`eqx.filter_eval_shape`)."
        )
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_finite(arrays: list[tuple[str, np.ndarray, str]], path: str, origin) -> None:
    """Raises naming the first parameter (in the model's order) with a NaN or an Inf."""
    bad = [
        (name, array, key)
        for name, array, key in arrays
        if jnp.issubdtype(array.dtype, jnp.inexact) and not np.isfinite(array).all()
    ]
    if bad:
        name, array, key = bad[0]
        num_nan = int(np.isnan(array).sum())
        num_inf = int(np.isinf(array).sum())
        more = f"; {len(bad) - 1} more parameter(s) have some" if len(bad) > 1 else ""
        raise ValueError(
            f"Checkpoint {path!r} must hold finite weights (pass `allow_nonfinite=True` to "
            f"load it anyway). Received: {num_nan} NaN and {num_inf} infinite value(s) of "
            f"{array.size} in `{name}` (checkpoint key {origin(key)!r}), the first such "
            f"parameter{more}."
        )


def _is_param(leaf: Any) -> bool:
    # Abstract arrays too: a model built with `eqx.filter_eval_shape` skips the random
    # initialisation that loading overwrites anyway.
    return eqx.is_array(leaf) or isinstance(leaf, jax.ShapeDtypeStruct)
