"""CLIP's published checkpoints: OpenAI/open_clip state dicts and transformers' `CLIPModel`.

Key names (torch layouts: `Linear` weights `[out, in]`, which ours share):

- OpenAI (`clip/model.py`) and open_clip (`open_clip/model.py`, `transformer.py`), as
  `.pt`/`.bin` state dicts or `.safetensors`: `visual.{conv1.weight, class_embedding,
  positional_embedding, ln_pre, transformer.resblocks.{i}.{ln_1, attn.in_proj_weight,
  attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post, proj}`,
  `token_embedding.weight`, `positional_embedding`, `transformer.resblocks.{i}...`,
  `ln_final`, `text_projection`, `logit_scale`. Projections are `[width, embed_dim]`
  (applied as `x @ proj`), the fused `in_proj` rows are `[query; key; value]`. OpenAI's
  files also hold `input_resolution`, `context_length` and `vocab_size` as numbers,
  which the shapes already check.
- transformers (`modeling_clip.py`, `CLIPModel.save_pretrained`: `model.safetensors`
  and `config.json`): `vision_model.{embeddings.{class_embedding, patch_embedding,
  position_embedding}, pre_layrnorm, encoder.layers.{i}.{layer_norm1,
  self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}, post_layernorm}`,
  `text_model.{embeddings.{token_embedding, position_embedding}, encoder.layers.{i}...,
  final_layer_norm}`, `visual_projection`, `text_projection`, `logit_scale`.

Numerics: both sources use PyTorch's LayerNorm epsilon, 1e-5 (transformers reads
`layer_norm_eps` from the config). The activation is in transformers' config
(`hidden_act`: `"quick_gelu"` for OpenAI's models, `"gelu"` for others) and is set from
it; an OpenAI/open_clip state dict does not record it, so the model keeps its own
(`quick_gelu=True` for OpenAI's models, `False` for most open_clip ones). Neither
records the number of heads but transformers' config, which is checked; so is its
end-of-text pooling against the model's `eos_token_id`.
"""

import numpy as np

from . import _weights_torch as torch_formats
from ._vit_weights import _stack_blocks
from ._weights_rules import Converted, FamilyWeights, Rule, same, split, tokens, torch_linear
from ._weights_torch import TANH_GELUS

OPENAI_LAYER_NORM_EPS = 1e-5
_TOWERS = ("image_tower", "text_tower")


def _transposed(x: np.ndarray) -> np.ndarray:
    """A `[width, embed_dim]` projection (applied as `x @ proj`) to a `[embed_dim, width]` weight."""
    return x.T


def _dropped(x: np.ndarray) -> tuple:
    return ()


def _openai_blocks(prefix: str, dst: str) -> list[Rule]:
    """The blocks under `prefix` (`visual.` for the image tower, none for the text tower)."""
    block, out = prefix + r"transformer\.resblocks\.(?P<i>\d+)", dst + ".encoder.blocks[{i}]"
    return [
        *torch_linear(block + r"\.ln_1", out + ".norm1"),
        (
            block + r"\.attn\.in_proj_(?P<p>weight|bias)",
            tuple(f"{out}.attention.{n}.{{p}}" for n in ("query", "key", "value")),
            split(3),
        ),
        *torch_linear(block + r"\.attn\.out_proj", out + ".attention.out"),
        *torch_linear(block + r"\.ln_2", out + ".norm2"),
        *torch_linear(block + r"\.mlp\.c_fc", out + ".mlp.dense1"),
        *torch_linear(block + r"\.mlp\.c_proj", out + ".mlp.dense2"),
    ]


OPENAI_RULES: list[Rule] = [
    (r"visual\.conv1\.weight", "image_tower.embedding.weight", same),
    (r"visual\.class_embedding", "image_tower.cls_token", tokens),
    (r"visual\.positional_embedding", "image_tower.pos_embedding.weight", same),
    *torch_linear(r"visual\.ln_pre", "image_tower.pre_norm"),
    *_openai_blocks(r"visual\.", "image_tower"),
    *torch_linear(r"visual\.ln_post", "image_tower.encoder.norm"),
    (r"visual\.proj", "image_tower.projection.weight", _transposed),
    (r"token_embedding\.weight", "text_tower.token_embedding.weight", same),
    ("positional_embedding", "text_tower.pos_embedding.weight", same),
    *_openai_blocks("", "text_tower"),
    *torch_linear("ln_final", "text_tower.encoder.norm"),
    ("text_projection", "text_tower.projection.weight", _transposed),
    ("logit_scale", "logit_scale", same),
    # Sizes the shapes check; the causal mask, a buffer of some versions, is built in.
    ("input_resolution|context_length|vocab_size|attn_mask", (), _dropped),
]


def _transformers_blocks(src: str, dst: str) -> list[Rule]:
    layer, out = src + r"\.encoder\.layers\.(?P<i>\d+)", dst + ".encoder.blocks[{i}]"
    return [
        *torch_linear(layer + r"\.layer_norm1", out + ".norm1"),
        *[
            rule
            for short, name in (("q", "query"), ("k", "key"), ("v", "value"), ("out", "out"))
            for rule in torch_linear(layer + rf"\.self_attn\.{short}_proj", f"{out}.attention.{name}")
        ],
        *torch_linear(layer + r"\.layer_norm2", out + ".norm2"),
        *torch_linear(layer + r"\.mlp\.fc1", out + ".mlp.dense1"),
        *torch_linear(layer + r"\.mlp\.fc2", out + ".mlp.dense2"),
    ]


TRANSFORMERS_RULES: list[Rule] = [
    (r"vision_model\.embeddings\.patch_embedding\.weight", "image_tower.embedding.weight", same),
    (r"vision_model\.embeddings\.class_embedding", "image_tower.cls_token", tokens),
    (r"vision_model\.embeddings\.position_embedding\.weight", "image_tower.pos_embedding.weight", same),
    *torch_linear(r"vision_model\.pre_layrnorm", "image_tower.pre_norm"),
    *_transformers_blocks(r"vision_model", "image_tower"),
    *torch_linear(r"vision_model\.post_layernorm", "image_tower.encoder.norm"),
    (r"visual_projection\.weight", "image_tower.projection.weight", same),
    (r"text_model\.embeddings\.token_embedding\.weight", "text_tower.token_embedding.weight", same),
    (r"text_model\.embeddings\.position_embedding\.weight", "text_tower.pos_embedding.weight", same),
    *_transformers_blocks(r"text_model", "text_tower"),
    *torch_linear(r"text_model\.final_layer_norm", "text_tower.encoder.norm"),
    (r"text_projection\.weight", "text_tower.projection.weight", same),
    ("logit_scale", "logit_scale", same),
    # `arange` buffers of older versions.
    (r"(?:vision|text)_model\.embeddings\.position_ids", (), _dropped),
]

# transformers' defaults, for a config.json that leaves them out.
_DEFAULT_ACT, _DEFAULT_EPS, _DEFAULT_EOS = "quick_gelu", 1e-5, 49407
# transformers' configs before its PR #24773 give this `eos_token_id`, and pool at the largest id.
_LEGACY_EOS = 2


def transformers_clip_numerics(config: dict, path: str) -> tuple[bool, float, bool]:
    """`(gelu_approximate, layer_norm_eps, quick_gelu)` of a transformers `CLIPConfig`.

    Raises:
        ValueError: an activation other than GELU or QuickGELU, or towers that differ.
    """
    numerics = {}
    for tower in ("vision_config", "text_config"):
        sub = config.get(tower) or {}
        act = sub.get("hidden_act", _DEFAULT_ACT)
        if act not in ("quick_gelu", "gelu", *TANH_GELUS):
            raise ValueError(
                f"`{tower}.hidden_act` in the config.json beside {path!r} must be 'quick_gelu' or a GELU "
                f"('gelu', {', '.join(map(repr, TANH_GELUS))}). Received: {act!r}."
            )
        numerics[tower] = (
            act in TANH_GELUS,
            float(sub.get("layer_norm_eps", _DEFAULT_EPS)),
            act == "quick_gelu",
        )
    if numerics["vision_config"] != numerics["text_config"]:
        raise ValueError(
            f"The config.json beside {path!r} must give both towers the same `hidden_act` and "
            "`layer_norm_eps` (CLIP has one `quick_gelu` and one `layer_norm_eps`). Received: "
            f"vision {numerics['vision_config']}, text {numerics['text_config']} "
            "(gelu_approximate, layer_norm_eps, quick_gelu)."
        )
    return numerics["vision_config"]


def _num_heads(encoder) -> int:
    blocks = encoder.blocks
    return (blocks if encoder.scan_layers else blocks[0]).attention.num_heads


def _check_transformers_config(model, config: dict, path: str) -> None:
    """Raises where the config's heads or text pooling differ from the model's."""
    for tower, name, argument in (
        ("image_tower", "vision_config", "vision_heads"),
        ("text_tower", "text_config", "text_heads"),
    ):
        heads = (config.get(name) or {}).get("num_attention_heads")
        own = _num_heads(getattr(model, tower).encoder)
        if heads is not None and heads != own:
            raise ValueError(
                f"The model's `{argument}` (={own}) must be the checkpoint's `{name}.num_attention_heads` "
                f"(the weights' shapes do not record it). Received: {heads} in the config.json beside {path!r}."
            )
    eos = (config.get("text_config") or {}).get("eos_token_id", _DEFAULT_EOS)
    pooling = None if eos == _LEGACY_EOS else eos  # None: at the largest id
    own = model.text_tower.eos_token_id
    vocab_size = model.text_tower.token_embedding.weight.shape[0]
    # At the largest id or at the first `vocab_size - 1`: the same place, as no id is larger.
    if own != pooling and {own, pooling} != {None, vocab_size - 1}:
        raise ValueError(
            f"The model's `eos_token_id` (={own!r}, where the text is pooled; None: at the largest id) "
            f"must agree with the checkpoint's `text_config.eos_token_id` (={eos!r}; {_LEGACY_EOS} means "
            f"the largest id). Build the CLIP with `eos_token_id={pooling!r}`. Received: the config.json "
            f"beside {path!r}."
        )


def fit_clip(model, converted: Converted, path: str) -> Converted:
    """Checks a transformers config against the model, and stacks the blocks of scanned towers."""
    if any(key.startswith(("vision_model.", "text_model.")) for _, key in converted.values()):
        _check_transformers_config(model, torch_formats.transformers_config(path), path)
    converted = dict(converted)
    for tower in _TOWERS:
        encoder, prefix = getattr(model, tower).encoder, tower + "."
        if encoder.scan_layers:
            inside = {k[len(prefix) :]: v for k, v in converted.items() if k.startswith(prefix)}
            stacked = _stack_blocks(inside, len(encoder.drop_path_rates), path)
            converted = {k: v for k, v in converted.items() if not k.startswith(prefix)}
            converted.update({prefix + k: v for k, v in stacked.items()})
    return converted


CLIP_WEIGHTS = FamilyWeights(
    "CLIP",
    {"openai": OPENAI_RULES, "transformers": TRANSFORMERS_RULES},
    transformers_config=transformers_clip_numerics,
    fit=fit_clip,
)
