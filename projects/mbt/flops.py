"""Forward FLOPs of MBT with bottleneck, full and late fusion, on the synthetic clips and at MBT-B/16x2.

    .venv/bin/python projects/mbt/flops.py

prints a table of one example's forward FLOPs (XLA's cost analysis of the compiled
pass, `nn.counted_forward_flops`) for each fusion, with the tokens each fused layer
attends over. Bottleneck fusion's saving over full attention is the attention between
the modalities: with full fusion every token of one modality attends to every token of
the other in each fused layer; with bottlenecks each modality attends over its own
tokens and a few shared ones. The models are built abstractly and compiled, never run.
"""

import os
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import ml_collections

from scenic_eqx import nn, run

_HERE = os.path.dirname(os.path.abspath(__file__))
FUSIONS = ("bottleneck", "full", "late")


def _example(model_config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
    """One clip's inputs: RGB frames and a log-mel spectrogram, as `MBT` takes them."""
    size = model_config.get("image_size", 224)
    height, width = (size, size) if isinstance(size, int) else size
    return {
        "rgb": jax.ShapeDtypeStruct((model_config.get("num_frames", 32), height, width, 3), jnp.float32),
        "spectrogram": jax.ShapeDtypeStruct(
            (model_config.get("spectrogram_frames", 800), model_config.get("num_mel_bins", 128)), jnp.float32
        ),
    }


def fusion_flops(model_config: dict, num_classes: int) -> dict[str, float]:
    """`{fusion: forward FLOPs of one example}` for MBT with `model_config`, fusion varied."""
    run.import_file(os.path.join(_HERE, "model.py"))  # registers `mbt`
    config = ml_collections.ConfigDict(dict(model_config))
    counts = {}
    for fusion in FUSIONS:
        kwargs = {**config.to_dict(), "fusion": fusion, "modalities": ("rgb", "spectrogram")}
        model = eqx.filter_eval_shape(
            nn.create, "mbt", num_classes=num_classes, key=jax.random.key(0), **kwargs
        )
        counts[fusion] = nn.counted_forward_flops(model, _example(config))
    return counts


def _readable(flops: float) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if flops >= scale:
            return f"{flops / scale:.2f} {prefix}FLOPs"
    return f"{flops:.0f} FLOPs"


def main() -> None:
    synthetic = run.load_config(os.path.join(_HERE, "configs", "synthetic.py")).model.to_dict()
    settings = (
        ("synthetic clips (hidden 32, 4 layers, fused from layer 2)", synthetic, 4),
        ("MBT-B/16x2, 32 frames 224x224 + 800x128 spectrogram (fused from layer 8)", {}, 527),
    )
    rows = ["| setting | fusion | forward FLOPs | vs full attention |", "|---|---|---|---|"]
    for name, model_config, num_classes in settings:
        counts = fusion_flops(model_config, num_classes)
        for fusion in FUSIONS:
            saving = 1 - counts[fusion] / counts["full"]
            versus = "-" if fusion == "full" else f"{saving:.1%} fewer"
            rows.append(f"| {name} | {fusion} | {_readable(counts[fusion])} | {versus} |")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
