"""PyTorch `.safetensors` checkpoints: timm / torchvision and Hugging Face `transformers`.

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


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a `.safetensors` file and its flavour, `"timm"` or `"transformers"`.

    transformers' task models prefix their backbone (`vit.`, `resnet.`); the prefix is
    removed. Files with neither flavour's keys count as timm (and then fail by name).
    """
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
    for prefix in ("vit.", "resnet."):
        if any(k.startswith(prefix) for k in arrays):
            arrays = {k.removeprefix(prefix): v for k, v in arrays.items()}
    hf_roots = ("embeddings.", "embedder.", "encoder.layer.", "encoder.stages.")
    flavour = "transformers" if any(k.startswith(hf_roots) for k in arrays) else "timm"
    return arrays, flavour


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
