"""PyTorch checkpoints: timm / torchvision, Hugging Face `transformers`, OpenAI/open_clip.

torch's `Linear` weight is `[out, in]` and its `Conv2d` weight `[out, in, h, w]`, the
layouts of `eqx.nn.Linear` and `eqx.nn.Conv2d`, so arrays are only renamed (and timm's
fused `qkv` split). Key names:

- timm ViT (`timm/models/vision_transformer.py`): `cls_token`, `pos_embed`,
  `patch_embed.proj`, `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
  mlp.fc2}`, `norm`, `head`; MAP pooling `attn_pool.{latent, q, kv, proj, norm, mlp}`.
- timm Mixer (`mlp_mixer.py`): `stem.proj`, `blocks.{i}.{norm1, mlp_tokens.fc1/fc2,
  norm2, mlp_channels.fc1/fc2}`, `norm`, `head`.
- timm / torchvision ResNet: `conv1`, `bn1`, `layer{s}.{j}.{conv,bn}{1,2,3}`,
  `layer{s}.{j}.downsample.{0,1}`, `fc`.
- transformers ViT (`modeling_vit.py`; `ViTForImageClassification` adds `vit.`):
  `embeddings.{cls_token, position_embeddings, patch_embeddings.projection}`,
  `encoder.layer.{i}.{layernorm_before, attention.attention.{query,key,value},
  attention.output.dense, layernorm_after, intermediate.dense, output.dense}`
  (transformers 5 in memory: `layers.{i}.{attention.{q,k,v,o}_proj, mlp.fc1, mlp.fc2}`),
  `layernorm`, `pooler.dense`, `classifier`.
- transformers ResNet (`modeling_resnet.py`; `resnet.` prefix): `embedder.embedder.
  {convolution, normalization}`, `encoder.stages.{s}.layers.{j}.layer.{k}.
  {convolution, normalization}`, `...shortcut.{convolution, normalization}`,
  `classifier.1`.
- transformers CLIP and OpenAI/open_clip CLIP: see `_clip_weights.py`. OpenAI/open_clip
  state dicts are `.safetensors` or torch's pickled `.pt`/`.bin` files, read with
  `torch.load(weights_only=True)`, which builds tensors and containers only.

timm trains with exact GELU and LayerNorm eps 1e-6; transformers' ViT reads both from
its `config.json` (`hidden_act`, `layer_norm_eps`, defaults `"gelu"` and 1e-12).
"""

import json
import os

import numpy as np

from .._extras import require

TIMM_GELU_APPROXIMATE, TIMM_LAYER_NORM_EPS = False, 1e-6
# transformers' names for tanh-approximate GELU.
TANH_GELUS = ("gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_accurate")


# Key roots that tell a checkpoint's flavour; a file with none counts as timm (and then
# fails by name).
_TRANSFORMERS_ROOTS = (
    "embeddings.",
    "embedder.",
    "encoder.layer.",
    "encoder.stages.",
    "vision_model.",
    "text_model.",
)
_OPENAI_ROOTS = ("visual.", "transformer.resblocks.")


def with_flavour(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """The arrays and their flavour, `"transformers"`, `"openai"` (OpenAI/open_clip CLIP) or
    `"timm"`, told by the keys' roots.

    transformers' task models prefix their backbone (`vit.`, `resnet.`); the prefix is
    removed.
    """
    for prefix in ("vit.", "resnet."):
        if any(k.startswith(prefix) for k in arrays):
            arrays = {k.removeprefix(prefix): v for k, v in arrays.items()}
    if any(k.startswith(_TRANSFORMERS_ROOTS) for k in arrays):
        return arrays, "transformers"
    if any(k.startswith(_OPENAI_ROOTS) for k in arrays):
        return arrays, "openai"
    return arrays, "timm"


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a `.safetensors` file and their flavour (see `with_flavour`)."""
    require("safetensors", "weights", "Loading a .safetensors checkpoint")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"`path` must be a complete `.safetensors` file. Received: {path!r} "
            f"({os.path.getsize(path)} bytes), which cannot be read (truncated or "
            f"corrupted?): {error}"
        ) from None
    return with_flavour(arrays)


def read_torch_pickle(path: str) -> tuple[dict[str, np.ndarray], str]:
    """The tensors of a torch `.pt`/`.bin` state dict, as numpy arrays, and their flavour.

    Read by `torch.load(weights_only=True)`: torch's restricted unpickler builds tensors
    and plain containers only, never objects named by the file. A training checkpoint's
    `{"state_dict": ...}` is unwrapped and a `module.` prefix (DistributedDataParallel)
    removed.

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: the file cannot be read this way (a TorchScript archive, another
            pickle, a truncated file) or holds no dict of tensors.
    """
    try:
        import torch
    except ModuleNotFoundError as error:
        raise ImportError(
            f"Reading the torch checkpoint {path!r} needs PyTorch, which is not installed: "
            "`pip install torch`, or save its state dict as `.safetensors` (`safetensors.torch.save_file`) "
            "where torch is, and load that."
        ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds: unpickling, zip, TorchScript
        first_line = next(iter(str(error).splitlines()), "")
        raise ValueError(
            f"`path` must be a torch state dict readable with `torch.load(weights_only=True)`. "
            f"Received: {path!r}, which it cannot read ({type(error).__name__}: {first_line}). OpenAI's "
            "original CLIP files are TorchScript archives: convert one where torch is with "
            "`torch.jit.load(path, map_location='cpu').state_dict()` and `safetensors.torch.save_file`."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"`path` must hold a state dict (names to tensors). Received: {path!r}, holding a "
            f"{type(state).__name__}."
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    # numpy has no bfloat16: floating tensors (often float16 in released files) become float32.
    arrays = {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
    return with_flavour(arrays)


def transformers_config(path: str) -> dict:
    """The `config.json` beside a transformers checkpoint, or `{}` when there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.exists(config_path):
        return {}
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"The `config.json` beside {path!r} must be a readable JSON object. Received: "
            f"{config_path!r}, which cannot be read: {error}"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(
            f"The `config.json` beside {path!r} must be a JSON object. Received: {type(config).__name__}."
        )
    return config
