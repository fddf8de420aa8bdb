"""ResNet's published checkpoints: the renaming rules of each source.

Sources: timm's and torchvision's `.safetensors` (the same names) and Hugging Face
transformers' (`ResNetForImageClassification`/`ResNetModel`, whose `config.json` is
checked against our architecture); the key names are listed in `_weights_torch.py`,
which reads the files. BatchNorm running statistics go into the model's initial state.
"""

from ._weights_rules import FamilyWeights, Rule, batch_norm, same, torch_linear


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


TIMM_RULES = _timm_resnet_rules()
TRANSFORMERS_RULES = _transformers_resnet_rules()


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


RESNET_WEIGHTS = FamilyWeights(
    "ResNet",
    {"timm": TIMM_RULES, "transformers": TRANSFORMERS_RULES},
    # Nothing to set: no GELU or LayerNorm, and BatchNorm eps 1e-5 is torch's default too.
    sets_numerics=False,
    transformers_config=check_transformers_resnet,
)
