"""Regenerates the golden checkpoints of `tests/nn/test_weights.py` from reference models.

Tiny PyTorch reference models (transformers, timm) get random weights, which are saved
in the checkpoint formats `scenic_eqx.nn.load_weights` reads, together with random
inputs and the references' logits. The tests then need no PyTorch: they load each
checkpoint and compare logits.

Run it with a separate environment holding the references, never the project's:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/refvenv/bin/pip install torch==2.14.1 transformers timm safetensors numpy
    /tmp/refvenv/bin/python tools/make_weight_fixtures.py

(Made with torch 2.14.1, transformers 5.24.0, timm 1.0.31, safetensors 0.8.0.)

Written to `tests/nn/fixtures/`:

- `hf_vit/`, `hf_resnet_basic/`, `hf_resnet_bottleneck/`: transformers'
  `save_pretrained` output (`model.safetensors`, `config.json`).
- `timm_vit.safetensors` (class token), `timm_vit_map.safetensors` (MAP pooling, no
  class token), `timm_mixer.safetensors`, `timm_resnet_basic.safetensors`: timm's
  `state_dict`.
- `google_vit.npz`: the original ViT layout (per-block, `MultiHeadDotProductAttention_1`,
  position table with a class-token row), converted from a transformers ViT that uses
  tanh-GELU and LayerNorm eps 1e-6, as Google's models do.
- `big_vision_vit_tok.npz`: big_vision's per-block layout of that same model (the
  class-token row of the position table folded into `cls`, as big_vision adds the table
  before prepending the class token).
- `big_vision_vit_map.npz`: big_vision's stacked (`scan=True`) layout under `params/`,
  converted from a timm MAP-pooling ViT with tanh-GELU.
- `google_mixer.npz`: Google's Mixer layout, converted from a timm Mixer with tanh-GELU.
- `reference_outputs.npz`: `inputs` `[2, 32, 32, 3]` (channels last, as scenic_eqx
  models take them; the references get them as NCHW) and `<fixture>` logits `[2,
  classes]` for each checkpoint above, float32, eval mode.

Every parameter and BatchNorm statistic is drawn at random (LayerNorm/BatchNorm scales
around 1, biases and running means around 0, running variances in [0.5, 1.5]), so no
array is trivially ones or zeros and the comparison is meaningful.
"""

import json
import math
import os
import pathlib
import tempfile

import numpy as np
import timm
import torch
import transformers
from safetensors.numpy import load_file
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "nn" / "fixtures"
IMAGE, PATCH, HIDDEN, LAYERS, HEADS, MLP, CLASSES = 32, 8, 16, 2, 2, 32, 5


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights with roughly unit-variance activations, statistics included."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            normal = torch.randn(p.shape, generator=generator)
            if p.ndim >= 2 and "cls" not in name and "latent" not in name and "pos" not in name:
                p.copy_(normal / math.sqrt(math.prod(p.shape[1:])))
            elif p.ndim == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scales
                p.copy_(1 + 0.2 * normal)
            elif p.ndim == 1:
                p.copy_(0.1 * normal)
            else:  # class token, MAP probe, position table
                p.copy_(0.5 * normal)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=generator))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=generator))
    model.eval()


def logits(model: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous())
    out = getattr(out, "logits", out)
    return out.numpy().astype(np.float32)


def numpy_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def save_timm(model: torch.nn.Module, name: str) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / name)


def hf_vit(hidden_act: str, layer_norm_eps: float) -> transformers.ViTForImageClassification:
    config = transformers.ViTConfig(
        image_size=IMAGE,
        patch_size=PATCH,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=MLP,
        num_labels=CLASSES,
        hidden_act=hidden_act,
        layer_norm_eps=layer_norm_eps,
    )
    return transformers.ViTForImageClassification(config)


def timm_vit(**kw) -> torch.nn.Module:
    return timm.models.vision_transformer.VisionTransformer(
        img_size=IMAGE,
        patch_size=PATCH,
        embed_dim=HIDDEN,
        depth=LAYERS,
        num_heads=HEADS,
        mlp_ratio=MLP / HIDDEN,
        num_classes=CLASSES,
        **kw,
    )


def timm_mixer(**kw) -> torch.nn.Module:
    # tokens_mlp_dim = 0.5 * 16 = 8, channels_mlp_dim = 2 * 16 = 32.
    return timm.models.mlp_mixer.MlpMixer(
        num_classes=CLASSES,
        img_size=IMAGE,
        patch_size=PATCH,
        num_blocks=LAYERS,
        embed_dim=HIDDEN,
        mlp_ratio=(0.5, 2.0),
        **kw,
    )


def flax_dense(w: np.ndarray) -> np.ndarray:
    return w.T


def flax_conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def flax_attention(q, k, v, o, prefix: str) -> dict[str, np.ndarray]:
    """torch `(weight, bias)` pairs to Flax's per-head query/key/value/out arrays."""
    out = {}
    for name, (w, b) in zip(("query", "key", "value"), (q, k, v)):
        out[f"{prefix}/{name}/kernel"] = w.T.reshape(HIDDEN, HEADS, -1)
        out[f"{prefix}/{name}/bias"] = b.reshape(HEADS, -1)
    out[f"{prefix}/out/kernel"] = o[0].T.reshape(HEADS, -1, HIDDEN)
    out[f"{prefix}/out/bias"] = o[1]
    return out


def flax_layer_norm(w, b, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/scale": w, f"{prefix}/bias": b}


def flax_mlp(fc1, fc2, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}/Dense_0/kernel": flax_dense(fc1[0]),
        f"{prefix}/Dense_0/bias": fc1[1],
        f"{prefix}/Dense_1/kernel": flax_dense(fc2[0]),
        f"{prefix}/Dense_1/bias": fc2[1],
    }


def google_vit_from_hf(sd: dict[str, np.ndarray], big_vision: bool) -> dict[str, np.ndarray]:
    """A transformers ViT checkpoint (hub names) in Google's original or big_vision layout."""
    pair = lambda name: (sd[f"{name}.weight"], sd[f"{name}.bias"])
    posemb, cls = sd["vit.embeddings.position_embeddings"], sd["vit.embeddings.cls_token"]
    out = {
        "embedding/kernel": flax_conv(sd["vit.embeddings.patch_embeddings.projection.weight"]),
        "embedding/bias": sd["vit.embeddings.patch_embeddings.projection.bias"],
        **flax_layer_norm(*pair("vit.layernorm"), "Transformer/encoder_norm"),
        "head/kernel": flax_dense(sd["classifier.weight"]),
        "head/bias": sd["classifier.bias"],
    }
    if big_vision:
        out["cls"], out["pos_embedding"] = cls + posemb[:, :1], posemb[:, 1:]
    else:
        out["cls"], out["Transformer/posembed_input/pos_embedding"] = cls, posemb
    names = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
    if not big_vision:
        names = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
    for i in range(LAYERS):
        src, dst = f"vit.encoder.layer.{i}", f"Transformer/encoderblock_{i}"
        att = f"{src}.attention"
        out.update(flax_layer_norm(*pair(f"{src}.layernorm_before"), f"{dst}/{names[0]}"))
        out.update(
            flax_attention(
                pair(f"{att}.attention.query"),
                pair(f"{att}.attention.key"),
                pair(f"{att}.attention.value"),
                pair(f"{att}.output.dense"),
                f"{dst}/{names[1]}",
            )
        )
        out.update(flax_layer_norm(*pair(f"{src}.layernorm_after"), f"{dst}/{names[2]}"))
        out.update(
            flax_mlp(pair(f"{src}.intermediate.dense"), pair(f"{src}.output.dense"), f"{dst}/{names[3]}")
        )
    return out


def big_vision_map_from_timm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A timm MAP ViT (no class token) in big_vision's stacked layout under `params/`."""
    pair = lambda name: (sd[f"{name}.weight"], sd[f"{name}.bias"])
    out = {
        "embedding/kernel": flax_conv(sd["patch_embed.proj.weight"]),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "pos_embedding": sd["pos_embed"],
        **flax_layer_norm(*pair("norm"), "Transformer/encoder_norm"),
        "head/kernel": flax_dense(sd["head.weight"]),
        "head/bias": sd["head.bias"],
        "MAPHead_0/probe": sd["attn_pool.latent"],
        **flax_layer_norm(*pair("attn_pool.norm"), "MAPHead_0/LayerNorm_0"),
        **flax_mlp(pair("attn_pool.mlp.fc1"), pair("attn_pool.mlp.fc2"), "MAPHead_0/MlpBlock_0"),
    }
    kw, kb = np.split(sd["attn_pool.kv.weight"], 2), np.split(sd["attn_pool.kv.bias"], 2)
    out.update(
        flax_attention(
            pair("attn_pool.q"),
            (kw[0], kb[0]),
            (kw[1], kb[1]),
            pair("attn_pool.proj"),
            "MAPHead_0/MultiHeadDotProductAttention_0",
        )
    )
    blocks = []
    for i in range(LAYERS):
        src = f"blocks.{i}"
        qw, qb = np.split(sd[f"{src}.attn.qkv.weight"], 3), np.split(sd[f"{src}.attn.qkv.bias"], 3)
        blocks.append(
            {
                **flax_layer_norm(*pair(f"{src}.norm1"), "LayerNorm_0"),
                **flax_attention(
                    (qw[0], qb[0]),
                    (qw[1], qb[1]),
                    (qw[2], qb[2]),
                    pair(f"{src}.attn.proj"),
                    "MultiHeadDotProductAttention_0",
                ),
                **flax_layer_norm(*pair(f"{src}.norm2"), "LayerNorm_1"),
                **flax_mlp(pair(f"{src}.mlp.fc1"), pair(f"{src}.mlp.fc2"), "MlpBlock_0"),
            }
        )
    for name in blocks[0]:
        out[f"Transformer/encoderblock/{name}"] = np.stack([b[name] for b in blocks])
    return {f"params/{k}": v for k, v in out.items()}


def google_mixer_from_timm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    pair = lambda name: (sd[f"{name}.weight"], sd[f"{name}.bias"])
    out = {
        "stem/kernel": flax_conv(sd["stem.proj.weight"]),
        "stem/bias": sd["stem.proj.bias"],
        **flax_layer_norm(*pair("norm"), "pre_head_layer_norm"),
        "head/kernel": flax_dense(sd["head.weight"]),
        "head/bias": sd["head.bias"],
    }
    for i in range(LAYERS):
        src, dst = f"blocks.{i}", f"MixerBlock_{i}"
        out.update(flax_layer_norm(*pair(f"{src}.norm1"), f"{dst}/LayerNorm_0"))
        out.update(
            flax_mlp(pair(f"{src}.mlp_tokens.fc1"), pair(f"{src}.mlp_tokens.fc2"), f"{dst}/token_mixing")
        )
        out.update(flax_layer_norm(*pair(f"{src}.norm2"), f"{dst}/LayerNorm_1"))
        out.update(
            flax_mlp(
                pair(f"{src}.mlp_channels.fc1"), pair(f"{src}.mlp_channels.fc2"), f"{dst}/channel_mixing"
            )
        )
    return out


def hf_resnet(layer_type: str, hidden_sizes: list[int]) -> torch.nn.Module:
    config = transformers.ResNetConfig(
        embedding_size=2,
        hidden_sizes=hidden_sizes,
        depths=[2, 2, 2, 2],
        layer_type=layer_type,
        num_labels=CLASSES,
    )
    return transformers.ResNetForImageClassification(config)


def timm_resnet_basic() -> torch.nn.Module:
    """timm's ResNet-18 layout, 2 channels wide.

    timm's plain stem is always 64 channels wide (too big for a fixture), so its stem
    and the first block's input are narrowed to 2 channels by hand (the block then
    needs no projection shortcut); the forward pass stays timm's.
    """
    resnet = timm.models.resnet
    model = resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2], num_classes=CLASSES, channels=(2, 4, 8, 16))
    model.conv1 = torch.nn.Conv2d(3, 2, 7, stride=2, padding=3, bias=False)
    model.bn1 = torch.nn.BatchNorm2d(2)
    model.layer1[0].conv1 = torch.nn.Conv2d(2, 2, 3, padding=1, bias=False)
    model.layer1[0].downsample = None
    return model


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    inputs = np.random.default_rng(0).normal(size=(2, IMAGE, IMAGE, 3)).astype(np.float32)
    outputs = {"inputs": inputs}

    def save_pretrained(model: torch.nn.Module, name: str) -> dict[str, np.ndarray]:
        model.save_pretrained(OUT / name)
        for extra in ("generation_config.json",):
            if (OUT / name / extra).exists():
                os.remove(OUT / name / extra)
        return load_file(OUT / name / "model.safetensors")

    model = hf_vit("gelu", 1e-12)
    randomize(model, generator)
    save_pretrained(model, "hf_vit")
    outputs["hf_vit"] = logits(model, inputs)

    model = hf_vit("gelu_pytorch_tanh", 1e-6)  # Google's numerics.
    randomize(model, generator)
    with tempfile.TemporaryDirectory() as tmp:  # For the hub (legacy) key names.
        model.save_pretrained(tmp)
        hub_state = load_file(os.path.join(tmp, "model.safetensors"))
    np.savez(OUT / "google_vit.npz", **google_vit_from_hf(hub_state, big_vision=False))
    np.savez(OUT / "big_vision_vit_tok.npz", **google_vit_from_hf(hub_state, big_vision=True))
    outputs["google_vit"] = outputs["big_vision_vit_tok"] = logits(model, inputs)

    model = timm_vit()
    randomize(model, generator)
    save_timm(model, "timm_vit.safetensors")
    outputs["timm_vit"] = logits(model, inputs)

    model = timm_vit(class_token=False, global_pool="map")
    randomize(model, generator)
    save_timm(model, "timm_vit_map.safetensors")
    outputs["timm_vit_map"] = logits(model, inputs)

    model = timm_vit(class_token=False, global_pool="map", act_layer="gelu_tanh")
    randomize(model, generator)
    np.savez(OUT / "big_vision_vit_map.npz", **big_vision_map_from_timm(numpy_state(model)))
    outputs["big_vision_vit_map"] = logits(model, inputs)

    model = timm_mixer()
    randomize(model, generator)
    save_timm(model, "timm_mixer.safetensors")
    outputs["timm_mixer"] = logits(model, inputs)

    model = timm_mixer(act_layer=lambda: torch.nn.GELU(approximate="tanh"))
    randomize(model, generator)
    np.savez(OUT / "google_mixer.npz", **google_mixer_from_timm(numpy_state(model)))
    outputs["google_mixer"] = logits(model, inputs)

    for name, layer_type, sizes in (
        ("hf_resnet_basic", "basic", [2, 4, 8, 16]),
        ("hf_resnet_bottleneck", "bottleneck", [8, 16, 32, 64]),
    ):
        model = hf_resnet(layer_type, sizes)
        randomize(model, generator)
        save_pretrained(model, name)
        outputs[name] = logits(model, inputs)

    model = timm_resnet_basic()
    randomize(model, generator)
    save_timm(model, "timm_resnet_basic.safetensors")
    outputs["timm_resnet_basic"] = logits(model, inputs)

    np.savez(OUT / "reference_outputs.npz", **outputs)
    sizes = {p.relative_to(OUT): p.stat().st_size for p in OUT.rglob("*") if p.is_file()}
    for path, size in sorted(sizes.items()):
        print(f"{size / 1024:8.1f} KiB  {path}")
    print(f"{sum(sizes.values()) / 1024:8.1f} KiB  total")
    with open(OUT / "hf_vit" / "config.json") as f:
        assert json.load(f)["layer_norm_eps"] == 1e-12


if __name__ == "__main__":
    main()
