"""Forward FLOPs of a plain ViT and of the same ViT with a TokenLearner, per config.

    .venv/bin/python projects/tokenlearner/flops.py

prints, for the digits models of `configs/digits.py` and for ViT-B/16 at 224x224 (the
ImageNet recipe, `configs/imagenet.py`), the FLOPs of one example's forward pass and
of a training step (`3 x batch x forward`, as `nn.forward_flops` counts a step), and
the tokens each block sees. The models are built abstractly and only compiled, never
run: XLA's cost analysis needs shapes only.

The counts are XLA's cost analysis of the compiled, unrolled forward pass
(`nn.counted_forward_flops`), in the convention of `nn.forward_flops`, which has no rule
for this project's model; for a library ViT the two agree to a fraction of a percent.
"""

import os
import sys

import equinox as eqx
import jax

from scenic_eqx import nn, run


def _readable(flops: float) -> str:
    """`flops` with the largest SI prefix that leaves at least 1: `21.84 MFLOPs`."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if flops >= scale:
            return f"{flops / scale:.2f} {prefix}FLOPs"
    return f"{flops:.0f} FLOPs"


def _row(name: str, model: eqx.Module, input_shape: tuple[int, ...], batch_size: int, tokens: str) -> str:
    forward = nn.counted_forward_flops(model, input_shape)
    step = 3 * batch_size * forward
    return f"| {name} | {tokens} | {_readable(forward)} | {_readable(step)} (batch {batch_size}) |"


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rows = ["| model | tokens per block | forward FLOPs | FLOPs per training step |", "|---|---|---|---|"]
    for spec, label in (
        ("digits.py:vit", "digits: plain ViT"),
        ("digits.py", "digits: TokenLearner ViT"),
        ("digits.py:fuser", "digits: TokenLearner + TokenFuser ViT"),
        ("imagenet.py:vit", "ImageNet: plain ViT-B/16"),
        ("imagenet.py", "ImageNet: TokenLearner ViT-B/16"),
    ):
        config = run.load_config(os.path.join(here, "configs", spec))
        num_classes = 1000 if config.dataset_name == "imagenet2012" else 10
        model = eqx.filter_eval_shape(
            nn.create, config.model_name, num_classes=num_classes, key=jax.random.key(0), **config.model
        )
        size, patch = config.model.image_size, config.model.patch_size
        channels = config.model.get("in_channels", 3)
        num_patches = (size // patch) ** 2
        layers = config.model.num_layers
        if config.model_name.startswith("vit_"):
            tokens = f"{num_patches} in all {layers}"
        else:
            before = config.model.tokenlearner_position
            learned = config.model.num_learned_tokens
            tokens = f"{num_patches} in {before}, then {learned} in {layers - before}"
            if config.model.get("use_token_fuser"):
                tokens += f" (fused back to {num_patches})"
        rows.append(_row(label, model, (size, size, channels), config.batch_size, tokens))
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
