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

GELU_APPROXIMATE = True
LAYER_NORM_EPS = 1e-6

_PREFIXES = ("", "params/", "params/img/", "opt/target/")
_STACKED = "Transformer/encoderblock/"


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
