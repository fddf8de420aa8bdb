"""Google's Flax `.npz` checkpoints: ViT (original and big_vision layouts) and MLP-Mixer.

Keys are Flax parameter paths joined by `/`. Dense kernels are `[in, out]`, convolution
kernels `[h, w, in, out]`, attention kernels `[dim, heads, head_dim]` (query, key,
value) and `[heads, head_dim, dim]` (out), LayerNorm parameters `scale` and `bias`.

- Original ViT / AugReg (google-research/vision_transformer `models_vit.py`): blocks
  `Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1,
  LayerNorm_2, MlpBlock_3/Dense_{0,1}}`, position table
  `Transformer/posembed_input/pos_embedding` (with a class-token row when there is a
  class token), `cls`, `Transformer/encoder_norm`, optional `pre_logits`, `head`.
- big_vision (`big_vision/models/vit.py`): blocks named `LayerNorm_0`,
  `MultiHeadDotProductAttention_0`, `LayerNorm_1`, `MlpBlock_0`; a top-level
  `pos_embedding` without a class-token row; `MAPHead_0/{probe,
  MultiHeadDotProductAttention_0, LayerNorm_0, MlpBlock_0}`; with `scan=True` one
  `Transformer/encoderblock/...` whose arrays carry a leading `[depth]` axis. Training
  checkpoints nest the parameters under `params/` (and a SigLIP image tower under
  `params/img/`; old ones under `opt/target/`); only that subtree is read.
- Mixer (`models_mixer.py`, big_vision `mlp_mixer.py`): `stem`,
  `MixerBlock_{i}/{LayerNorm_0, token_mixing/Dense_{0,1}, LayerNorm_1,
  channel_mixing/Dense_{0,1}}`, `pre_head_layer_norm`, `head`.

Both were trained with Flax's defaults: tanh-approximate GELU and LayerNorm eps 1e-6.
"""

import os
import zipfile
import zlib

import numpy as np

from ._weights_rules import (
    Rule,
    conv_kernel,
    dense_kernel,
    flat,
    heads_in_kernel,
    heads_out_kernel,
    same,
    tokens,
)

GELU_APPROXIMATE = True
LAYER_NORM_EPS = 1e-6

_PREFIXES = ("", "params/", "params/img/", "opt/target/")
_STACKED = "Transformer/encoderblock/"


def _layer_norm(src: str, dst: str) -> list[Rule]:
    return [(src + "/scale", dst + ".weight", same), (src + "/bias", dst + ".bias", same)]


def _dense(src: str, dst: str) -> list[Rule]:
    return [(src + "/kernel", dst + ".weight", dense_kernel), (src + "/bias", dst + ".bias", same)]


def _mlp(src: str, dst: str) -> list[Rule]:
    return _dense(src + "/Dense_0", dst + ".dense1") + _dense(src + "/Dense_1", dst + ".dense2")


def _attention(src: str, dst: str) -> list[Rule]:
    rules: list[Rule] = []
    for name in ("query", "key", "value"):
        rules.append((f"{src}/{name}/kernel", f"{dst}.{name}.weight", heads_in_kernel))
        rules.append((f"{src}/{name}/bias", f"{dst}.{name}.bias", flat))
    rules.append((f"{src}/out/kernel", f"{dst}.out.weight", heads_out_kernel))
    rules.append((f"{src}/out/bias", f"{dst}.out.bias", same))
    return rules


_BLOCK, _DST = r"Transformer/encoderblock_(?P<i>\d+)", "encoder.blocks[{i}]"

VIT_RULES: list[Rule] = [
    ("embedding/kernel", "embedding.weight", conv_kernel),
    ("embedding/bias", "embedding.bias", same),
    ("cls", "cls_token", tokens),
    ("(?:Transformer/posembed_input/|Transformer/)?pos_embedding", "pos_embedding.weight", tokens),
    *_layer_norm(_BLOCK + "/LayerNorm_0", _DST + ".norm1"),
    # The original code numbers a block's layers by position (`_1`, `_2`, `_3`),
    # big_vision by type (`_0`, `_1`, `_0`); a file mixing them fails on duplicates.
    *_attention(_BLOCK + "/MultiHeadDotProductAttention_[01]", _DST + ".attention"),
    *_layer_norm(_BLOCK + "/LayerNorm_[12]", _DST + ".norm2"),
    *_mlp(_BLOCK + "/MlpBlock_[03]", _DST + ".mlp"),
    *_layer_norm("Transformer/encoder_norm", "encoder.norm"),
    ("MAPHead_0/probe", "map_head.probe", tokens),
    *_attention("MAPHead_0/MultiHeadDotProductAttention_0", "map_head.attention"),
    *_layer_norm("MAPHead_0/LayerNorm_0", "map_head.norm"),
    *_mlp("MAPHead_0/MlpBlock_0", "map_head.mlp"),
    *_dense("pre_logits", "pre_logits"),
    *_dense("head", "head"),
]

_MIXER, _MIXER_DST = r"MixerBlock_(?P<i>\d+)", "blocks[{i}]"

MIXER_RULES: list[Rule] = [
    ("stem/kernel", "stem.weight", conv_kernel),
    ("stem/bias", "stem.bias", same),
    *_layer_norm(_MIXER + "/LayerNorm_0", _MIXER_DST + ".norm1"),
    *_mlp(_MIXER + "/token_mixing", _MIXER_DST + ".token_mixing"),
    *_layer_norm(_MIXER + "/LayerNorm_1", _MIXER_DST + ".norm2"),
    *_mlp(_MIXER + "/channel_mixing", _MIXER_DST + ".channel_mixing"),
    *_layer_norm("pre_head_layer_norm", "norm"),
    *_dense("head", "head"),
]


def _as_float(x: np.ndarray) -> np.ndarray:
    # numpy has no bfloat16: Flax writes bfloat16 arrays as 2-byte void records.
    if x.dtype.kind == "V" and x.dtype.itemsize == 2:
        import ml_dtypes

        return x.view(ml_dtypes.bfloat16)
    return x


def _pickled(path: str, what: str) -> str:
    return (
        f"`path` must hold numeric arrays only. Received: {path!r}, where {what}: reading it "
        "would unpickle Python objects, which can execute code from the file, so it is "
        "refused. Re-save the weights as numeric arrays."
    )


def read_npz_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file, read without unpickling anything.

    `np.load` is called with `allow_pickle=False`: an object array (whose loading would
    run code chosen by the file's author) is refused, not loaded.

    Raises:
        ValueError: a file that is not a whole `.npz` archive (truncated, another
            format) or holds an object array; the message names the path.
    """
    # The file is opened here, not by `np.load`: numpy leaves its own handle open when the
    # archive is truncated (a `zipfile.BadZipFile` from inside `np.load`).
    with open(path, "rb") as file:
        try:
            npz = np.load(file, allow_pickle=False)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            if "allow_pickle" in str(error):
                raise ValueError(_pickled(path, "the file is a pickle")) from None
            raise ValueError(
                f"`path` must be a complete `.npz` archive of numeric arrays. Received: {path!r} "
                f"({os.path.getsize(path)} bytes), which cannot be read: {error}"
            ) from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(
                f"`path` must be an `.npz` archive (several named arrays). Received: {path!r}, "
                "a single `.npy` array."
            )
        arrays = {}
        with npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as error:
                    if "allow_pickle" not in str(error):
                        raise ValueError(
                            f"`path` must be a complete `.npz` archive. Received: {path!r}, whose "
                            f"array {key!r} cannot be read: {error}"
                        ) from None
                    raise ValueError(_pickled(path, f"its entry {key!r} is an object array")) from None
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
                    raise ValueError(
                        f"`path` must be a complete `.npz` archive. Received: {path!r}, whose "
                        f"array {key!r} cannot be read (truncated or corrupted?): {error}"
                    ) from None
    return arrays


def read_npz(path: str, root: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The parameter arrays of a Google `.npz` checkpoint, blocks unstacked.

    Arguments:
        path: the `.npz` file.
        root: a key every checkpoint of the family has (`"embedding/kernel"` for ViT,
            `"stem/kernel"` for Mixer), to find the parameters' prefix.

    Returns:
        `{key: array}` with the prefix removed, big_vision's stacked
        `Transformer/encoderblock/<name>` arrays `[depth, ...]` split into
        `Transformer/encoderblock_{i}/<name>`; and, for messages, the file's own name
        of each key that differs from it (`"params/.../LayerNorm_0/scale[3]"`).
    """
    arrays = {key: _as_float(value) for key, value in read_npz_arrays(path).items()}
    prefix = next((p for p in _PREFIXES if p + root in arrays), "")
    arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    out, origins = {}, {}
    for key, value in arrays.items():
        if key.startswith(_STACKED):
            for i, layer in enumerate(value):
                name = f"Transformer/encoderblock_{i}/{key[len(_STACKED) :]}"
                out[name], origins[name] = layer, f"{prefix}{key}[{i}]"
        else:
            out[key] = value
            if prefix:
                origins[key] = prefix + key
    return out, origins
