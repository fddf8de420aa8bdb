"""MLP-Mixer's published checkpoints: the renaming rules of each source.

Sources: Google's Flax `.npz` (`models_mixer.py`, big_vision `mlp_mixer.py`) and
timm's `.safetensors` (`mlp_mixer.py`); the key names are listed in
`_weights_google.py` and `_weights_torch.py`, which read the files.
"""

from ._weights_rules import (
    FamilyWeights,
    Rule,
    conv_kernel,
    flax_dense,
    flax_layer_norm,
    flax_mlp,
    same,
    torch_linear,
)

_TIMM_BLOCK = r"blocks\.(?P<i>\d+)"

_MIXER, _MIXER_DST = r"MixerBlock_(?P<i>\d+)", "blocks[{i}]"

GOOGLE_RULES: list[Rule] = [
    ("stem/kernel", "stem.weight", conv_kernel),
    ("stem/bias", "stem.bias", same),
    *flax_layer_norm(_MIXER + "/LayerNorm_0", _MIXER_DST + ".norm1"),
    *flax_mlp(_MIXER + "/token_mixing", _MIXER_DST + ".token_mixing"),
    *flax_layer_norm(_MIXER + "/LayerNorm_1", _MIXER_DST + ".norm2"),
    *flax_mlp(_MIXER + "/channel_mixing", _MIXER_DST + ".channel_mixing"),
    *flax_layer_norm("pre_head_layer_norm", "norm"),
    *flax_dense("head", "head"),
]


TIMM_RULES: list[Rule] = [
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


MIXER_WEIGHTS = FamilyWeights(
    "MlpMixer", {"google": GOOGLE_RULES, "timm": TIMM_RULES}, npz_root="stem/kernel"
)
