"""ViT's published checkpoints: the renaming rules of each source, and fitting to the model.

Sources (the key names each uses are listed in `_weights_google.py` and
`_weights_torch.py`, which read the files): Google's Flax `.npz` (original ViT/AugReg
and big_vision layouts, MAP heads), timm's and Hugging Face transformers'
`.safetensors`. A scanned encoder (`scan_layers=True`) gets the blocks stacked; a learned
position table of another grid size is resampled.
"""

import numpy as np

from ._posemb_resample import adapt_posemb
from ._position_embedding import LearnedPositionEmbedding
from ._weights_rules import (
    Converted,
    FamilyWeights,
    Rule,
    conv_kernel,
    flax_attention,
    flax_dense,
    flax_layer_norm,
    flax_mlp,
    same,
    split,
    tokens,
    torch_linear,
)
from ._weights_torch import TANH_GELUS

_BLOCK, _DST = r"Transformer/encoderblock_(?P<i>\d+)", "encoder.blocks[{i}]"

GOOGLE_RULES: list[Rule] = [
    ("embedding/kernel", "embedding.weight", conv_kernel),
    ("embedding/bias", "embedding.bias", same),
    ("cls", "cls_token", tokens),
    ("(?:Transformer/posembed_input/|Transformer/)?pos_embedding", "pos_embedding.weight", tokens),
    *flax_layer_norm(_BLOCK + "/LayerNorm_0", _DST + ".norm1"),
    # The original code numbers a block's layers by position (`_1`, `_2`, `_3`),
    # big_vision by type (`_0`, `_1`, `_0`); a file mixing them fails on duplicates.
    *flax_attention(_BLOCK + "/MultiHeadDotProductAttention_[01]", _DST + ".attention"),
    *flax_layer_norm(_BLOCK + "/LayerNorm_[12]", _DST + ".norm2"),
    *flax_mlp(_BLOCK + "/MlpBlock_[03]", _DST + ".mlp"),
    *flax_layer_norm("Transformer/encoder_norm", "encoder.norm"),
    ("MAPHead_0/probe", "map_head.probe", tokens),
    *flax_attention("MAPHead_0/MultiHeadDotProductAttention_0", "map_head.attention"),
    *flax_layer_norm("MAPHead_0/LayerNorm_0", "map_head.norm"),
    *flax_mlp("MAPHead_0/MlpBlock_0", "map_head.mlp"),
    *flax_dense("pre_logits", "pre_logits"),
    *flax_dense("head", "head"),
]

_TIMM_BLOCK = r"blocks\.(?P<i>\d+)"

TIMM_RULES: list[Rule] = [
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

_HF_LAYER = r"(?:encoder\.layer|layers)\.(?P<i>\d+)"

TRANSFORMERS_RULES: list[Rule] = [
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


def transformers_vit_numerics(config: dict, path: str) -> tuple[bool, float]:
    """`(gelu_approximate, layer_norm_eps)` of a transformers ViT `config`."""
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", *TANH_GELUS):
        raise ValueError(
            f"`hidden_act` (={act!r}) in the config.json beside {path!r} is not a GELU; "
            "ViT supports 'gelu' (exact) and tanh-approximate GELUs."
        )
    return act in TANH_GELUS, float(config.get("layer_norm_eps", 1e-12))


def fit_vit(model, converted: Converted, path: str) -> Converted:
    """Stacks blocks for a `scan_layers` encoder and fits the position table."""
    converted = dict(converted)
    if model.encoder.scan_layers:
        converted = _stack_blocks(converted, len(model.encoder.drop_path_rates), path)
    name = "pos_embedding.weight"
    if name in converted and isinstance(model.pos_embedding, LearnedPositionEmbedding):
        table, key = converted[name]
        patch = model.embedding.patch_size
        grid = (model.image_size[0] // patch[0], model.image_size[1] // patch[1])
        if table.ndim == 2 and table.shape[1] == model.pos_embedding.weight.shape[1]:
            table = adapt_posemb(
                table,
                checkpoint_has_cls="cls_token" in converted,
                num_prefix=int(model.cls_token is not None),
                grid=grid,
                name=key,
            )
        converted[name] = (table, key)
    return converted


def _stack_blocks(converted: Converted, num_layers: int, path: str) -> Converted:
    """`encoder.blocks[i].<name>` arrays stacked into `encoder.blocks.<name>` `[layers, ...]`."""
    prefix = "encoder.blocks["
    per_block: dict[str, dict[int, tuple[np.ndarray, str]]] = {}
    out = {}
    for name, value in converted.items():
        if name.startswith(prefix):
            index, rest = name[len(prefix) :].split("]", 1)
            per_block.setdefault(rest, {})[int(index)] = value
        else:
            out[name] = value
    found = sorted({i for layers in per_block.values() for i in layers})
    if per_block and found != list(range(num_layers)):
        raise ValueError(
            f"The model's `num_layers` (={num_layers}) must be the checkpoint's number of "
            f"encoder blocks. Received: {path!r}, which has {len(found)} encoder blocks "
            f"({found[0]}..{found[-1]})."
        )
    for rest, layers in per_block.items():
        if len(layers) == num_layers:  # An incomplete stack is reported as missing.
            arrays = [layers[i][0] for i in range(num_layers)]
            out["encoder.blocks" + rest] = (np.stack(arrays), layers[0][1])
    return out


VIT_WEIGHTS = FamilyWeights(
    "ViT",
    {"google": GOOGLE_RULES, "timm": TIMM_RULES, "transformers": TRANSFORMERS_RULES},
    npz_root="embedding/kernel",
    transformers_config=transformers_vit_numerics,
    fit=fit_vit,
)
