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
from ._weights_rules import Rule, batch_norm, same, split, tokens, torch_linear

TIMM_GELU_APPROXIMATE, TIMM_LAYER_NORM_EPS = False, 1e-6
# transformers' names for tanh-approximate GELU.
_TANH_GELUS = ("gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_accurate")

_TIMM_BLOCK, _DST = r"blocks\.(?P<i>\d+)", "encoder.blocks[{i}]"

TIMM_VIT_RULES: list[Rule] = [
    ("cls_token", "cls_token", tokens),
    ("pos_embed", "pos_embedding.weight", tokens),
    *torch_linear(r"patch_embed\.proj", "embedding"),
    *torch_linear(_TIMM_BLOCK + r"\.norm1", _DST + ".norm1"),
    (
        _TIMM_BLOCK + r"\.attn\.qkv\.(?P<p>weight|bias)",
        tuple(f"{_DST}.attention.{n}.{{p}}" for n in ("query", "key", "value")),
        split(3),
    ),
    *torch_linear(_TIMM_BLOCK + r"\.attn\.proj", _DST + ".attention.out"),
    *torch_linear(_TIMM_BLOCK + r"\.norm2", _DST + ".norm2"),
    *torch_linear(_TIMM_BLOCK + r"\.mlp\.fc1", _DST + ".mlp.dense1"),
    *torch_linear(_TIMM_BLOCK + r"\.mlp\.fc2", _DST + ".mlp.dense2"),
    *torch_linear("norm", "encoder.norm"),
    *torch_linear("head", "head"),
    (r"attn_pool\.latent", "map_head.probe", tokens),
    *torch_linear(r"attn_pool\.q", "map_head.attention.query"),
    (
        r"attn_pool\.kv\.(?P<p>weight|bias)",
        ("map_head.attention.key.{p}", "map_head.attention.value.{p}"),
        split(2),
    ),
    *torch_linear(r"attn_pool\.proj", "map_head.attention.out"),
    *torch_linear(r"attn_pool\.norm", "map_head.norm"),
    *torch_linear(r"attn_pool\.mlp\.fc1", "map_head.mlp.dense1"),
    *torch_linear(r"attn_pool\.mlp\.fc2", "map_head.mlp.dense2"),
]

TIMM_MIXER_RULES: list[Rule] = [
    *torch_linear(r"stem\.proj", "stem"),
    *torch_linear(_TIMM_BLOCK + r"\.norm1", "blocks[{i}].norm1"),
    *torch_linear(_TIMM_BLOCK + r"\.mlp_tokens\.fc1", "blocks[{i}].token_mixing.dense1"),
    *torch_linear(_TIMM_BLOCK + r"\.mlp_tokens\.fc2", "blocks[{i}].token_mixing.dense2"),
    *torch_linear(_TIMM_BLOCK + r"\.norm2", "blocks[{i}].norm2"),
    *torch_linear(_TIMM_BLOCK + r"\.mlp_channels\.fc1", "blocks[{i}].channel_mixing.dense1"),
    *torch_linear(_TIMM_BLOCK + r"\.mlp_channels\.fc2", "blocks[{i}].channel_mixing.dense2"),
    *torch_linear("norm", "norm"),
    *torch_linear("head", "head"),
]

_HF_LAYER = r"(?:encoder\.layer|layers)\.(?P<i>\d+)"

HF_VIT_RULES: list[Rule] = [
    (r"embeddings\.cls_token", "cls_token", tokens),
    (r"embeddings\.position_embeddings", "pos_embedding.weight", tokens),
    *torch_linear(r"embeddings\.patch_embeddings\.projection", "embedding"),
    *torch_linear(_HF_LAYER + r"\.layernorm_before", _DST + ".norm1"),
    *[
        rule
        for name, short in (("query", "q"), ("key", "k"), ("value", "v"))
        for rule in torch_linear(
            _HF_LAYER + rf"\.attention\.(?:attention\.{name}|{short}_proj)",
            f"{_DST}.attention.{name}",
        )
    ],
    *torch_linear(_HF_LAYER + r"\.attention\.(?:output\.dense|o_proj)", _DST + ".attention.out"),
    *torch_linear(_HF_LAYER + r"\.layernorm_after", _DST + ".norm2"),
    *torch_linear(_HF_LAYER + r"\.(?:intermediate\.dense|mlp\.fc1)", _DST + ".mlp.dense1"),
    *torch_linear(_HF_LAYER + r"\.(?:output\.dense|mlp\.fc2)", _DST + ".mlp.dense2"),
    *torch_linear("layernorm", "encoder.norm"),
    # ViTModel's pooler is `tanh(dense(class token))`: our `pre_logits`.
    *torch_linear(r"pooler\.dense", "pre_logits"),
    *torch_linear("classifier", "head"),
]


def _timm_resnet_rules() -> list[Rule]:
    rules = [(r"conv1\.weight", "stem.conv.weight", same), *batch_norm("bn1", "stem.norm")]
    for stage in range(4):  # The ImageNet ResNets' `layer1` .. `layer4`.
        src, dst = rf"layer{stage + 1}\.(?P<j>\d+)", f"stages[{stage}].blocks[{{j}}]"
        for k in (1, 2, 3):
            rules.append((rf"{src}\.conv{k}\.weight", f"{dst}.conv{k}.weight", same))
            rules += batch_norm(rf"{src}\.bn{k}", f"{dst}.norm{k}")
        rules.append((rf"{src}\.downsample\.0\.weight", f"{dst}.downsample.conv.weight", same))
        rules += batch_norm(rf"{src}\.downsample\.1", f"{dst}.downsample.norm")
    return rules + torch_linear("fc", "head")


def _transformers_resnet_rules() -> list[Rule]:
    src, dst = r"encoder\.stages\.(?P<s>\d+)\.layers\.(?P<j>\d+)", "stages[{s}].blocks[{j}]"
    stem = r"embedder\.embedder"
    rules = [(stem + r"\.convolution\.weight", "stem.conv.weight", same)]
    rules += batch_norm(stem + r"\.normalization", "stem.norm")
    for k in range(3):  # `layer.{k}` is our `conv{k+1}` / `norm{k+1}`.
        conv = rf"{src}\.layer\.{k}\.convolution\.weight"
        rules.append((conv, f"{dst}.conv{k + 1}.weight", same))
        rules += batch_norm(rf"{src}\.layer\.{k}\.normalization", f"{dst}.norm{k + 1}")
    rules.append((src + r"\.shortcut\.convolution\.weight", dst + ".downsample.conv.weight", same))
    rules += batch_norm(src + r"\.shortcut\.normalization", dst + ".downsample.norm")
    return rules + torch_linear(r"classifier\.1", "head")


TIMM_RESNET_RULES = _timm_resnet_rules()
HF_RESNET_RULES = _transformers_resnet_rules()


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


def transformers_vit_numerics(config: dict, path: str) -> tuple[bool, float]:
    """`(gelu_approximate, layer_norm_eps)` of a transformers ViT `config`."""
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", *_TANH_GELUS):
        raise ValueError(
            f"`hidden_act` (={act!r}) in the config.json beside {path!r} is not a GELU; "
            "ViT supports 'gelu' (exact) and tanh-approximate GELUs."
        )
    return act in _TANH_GELUS, float(config.get("layer_norm_eps", 1e-12))


def check_transformers_resnet(config: dict, path: str) -> None:
    """Raises if a transformers ResNet config describes another architecture than ours."""
    expected = {
        "downsample_in_first_stage": False,  # ours: the first stage keeps the resolution
        "downsample_in_bottleneck": False,  # ours (v1.5): the stride is in the 3x3 conv
        "hidden_act": "relu",
    }
    for field, value in expected.items():
        if field in config and config[field] != value:
            raise ValueError(
                f"`{field}` (={config[field]!r}) in the config.json beside {path!r} is not "
                f"supported: scenic_eqx's ResNet has {field}={value!r}."
            )
