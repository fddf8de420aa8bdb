"""MBT: the Multimodal Bottleneck Transformer over RGB frames and a log-mel spectrogram.

Nagrani, Yang, Arnab, Jansen, Schmid and Sun, "Attention Bottlenecks for Multimodal
Fusion", NeurIPS 2021 (arXiv:2107.00135). Each modality is tokenised on its own
(`tokenizers.py`: CLS token, patches, learned positions) and runs through `num_layers`
layers, each with its own parameters per modality. Layers before `fusion_layer` keep
the modalities apart; from `fusion_layer` on they exchange information as `fusion`
says (`fusion.py`):

- `"bottleneck"` (the paper's MBT): only through `num_bottlenecks` shared bottleneck
  tokens, which each modality's layer attends over with its own tokens, their updates
  averaged over the modalities (eqs. 8-9);
- `"full"`: every token attends to every token of both modalities;
- `"late"`: never; the modalities meet only at the classifier (`fusion_layer` unused).

One final LayerNorm and one linear head are shared by the modalities; the logits are
the mean of the head applied to each modality's CLS token (section 3.3). With a single
modality in `modalities` the model is that modality's transformer alone.

Importing this file registers `mbt` in `scenic_eqx.nn` (MBT-B/16x2 by default: ViT-Base
widths, 2x16x16 tubelets on 32 frames of 224x224, 16x16 patches on 800x128 log-mel
spectrograms, 4 bottlenecks from layer 8 of 12). A config imports it with
`run.import_file`.
"""

import os
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from scenic_eqx import nn, run

_HERE = os.path.dirname(__file__)
_tokenizers = run.import_file(os.path.join(_HERE, "tokenizers.py"))
_fusion = run.import_file(os.path.join(_HERE, "fusion.py"))

MODALITIES = ("rgb", "spectrogram")
FUSIONS = ("bottleneck", "full", "late")


def _pair(value: int | Sequence[int], name: str) -> tuple[int, ...]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {value!r}.")
    return pair


def _check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    chosen = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(MODALITIES):
        raise ValueError(f"`modalities` must be distinct names among {MODALITIES}. Received: {modalities!r}.")
    return tuple(m for m in MODALITIES if m in chosen)


class MBT(eqx.Module):
    """The Multimodal Bottleneck Transformer (see the module docstring).

    Arguments:
        num_classes: logits.
        modalities: the inputs read, `("rgb", "spectrogram")` or one of them.
        fusion: `"bottleneck"`, `"full"` or `"late"`.
        fusion_layer: the first layer (0-based) that fuses; `num_layers` fuses none.
        num_bottlenecks: bottleneck tokens (`fusion="bottleneck"` with both modalities);
            0 cuts every path between the modalities.
        hidden_size, num_layers, num_heads, mlp_dim: the transformer's sizes.
        num_frames, image_size: the RGB clip (`image_size` an int or `(height, width)`).
        tubelet_size: `(time, height, width)` of an RGB tubelet (time 1: per-frame patches).
        spectrogram_frames, num_mel_bins: the log-mel spectrogram `[frames, mel]`.
        spectrogram_patch_size: `(frames, mel)` of a spectrogram patch.
        dropout_rate, attention_dropout_rate: as in `nn.EncoderBlock`.
        stochastic_depth: the last layer's stochastic depth rate, growing linearly from 0.
        gelu_approximate, layer_norm_eps: the numerics of the blocks and the final norm,
            as in `nn.EncoderBlock` (Google's ViT checkpoints use the tanh GELU).
        key: PRNG key for initialisation (keyword only).
    """

    tokenizers: dict
    layers: tuple[dict[str, nn.EncoderBlock], ...]
    bottleneck: Float[Array, "bottlenecks dim"] | None
    norm: nn.LayerNorm
    head: eqx.nn.Linear
    modalities: tuple[str, ...] = eqx.field(static=True)
    fusion: str = eqx.field(static=True)
    fusion_layer: int = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        *,
        modalities: Sequence[str] = MODALITIES,
        fusion: str = "bottleneck",
        fusion_layer: int = 8,
        num_bottlenecks: int = 4,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        num_frames: int = 32,
        image_size: int | Sequence[int] = 224,
        tubelet_size: Sequence[int] = (2, 16, 16),
        spectrogram_frames: int = 800,
        num_mel_bins: int = 128,
        spectrogram_patch_size: int | Sequence[int] = 16,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        stochastic_depth: float = 0.0,
        gelu_approximate: bool = False,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        self.modalities = _check_modalities(modalities)
        if fusion not in FUSIONS:
            raise ValueError(f"`fusion` must be one of {FUSIONS}. Received: {fusion!r}.")
        if not (isinstance(num_layers, int) and num_layers >= 1):
            raise ValueError(f"`num_layers` must be a positive int. Received: {num_layers!r}.")
        if not (isinstance(fusion_layer, int) and 0 <= fusion_layer <= num_layers):
            raise ValueError(
                f"`fusion_layer` must be an int in [0, `num_layers` (={num_layers})]. Received: {fusion_layer!r}."
            )
        if not (isinstance(num_bottlenecks, int) and num_bottlenecks >= 0):
            raise ValueError(f"`num_bottlenecks` must be a non-negative int. Received: {num_bottlenecks!r}.")
        if hidden_size % num_heads:
            raise ValueError(
                f"`hidden_size` (={hidden_size}) must be divisible by `num_heads` (={num_heads}). "
                f"Received: hidden_size={hidden_size}, num_heads={num_heads}."
            )
        k_rgb, k_spectrogram, k_layers, k_bottleneck, k_head = jax.random.split(key, 5)
        tokenizers = {
            "rgb": lambda: _tokenizers.RgbTokenizer(
                hidden_size,
                num_frames=num_frames,
                image_size=_pair(image_size, "image_size"),
                tubelet_size=tuple(tubelet_size),
                key=k_rgb,
            ),
            "spectrogram": lambda: _tokenizers.SpectrogramTokenizer(
                hidden_size,
                num_frames=spectrogram_frames,
                num_mel_bins=num_mel_bins,
                patch_size=_pair(spectrogram_patch_size, "spectrogram_patch_size"),
                key=k_spectrogram,
            ),
        }
        self.tokenizers = {m: tokenizers[m]() for m in self.modalities}
        layer_keys = jax.random.split(k_layers, (num_layers, len(self.modalities)))
        self.layers = tuple(
            {
                m: nn.EncoderBlock(
                    hidden_size,
                    num_heads,
                    mlp_dim,
                    dropout_rate=dropout_rate,
                    attention_dropout_rate=attention_dropout_rate,
                    drop_path_rate=stochastic_depth * i / max(num_layers - 1, 1),
                    gelu_approximate=gelu_approximate,
                    layer_norm_eps=layer_norm_eps,
                    key=layer_keys[i, j],
                )
                for j, m in enumerate(self.modalities)
            }
            for i in range(num_layers)
        )
        # Normal with std 0.02, as BERT's and ViT's learned tokens.
        self.bottleneck = (
            0.02 * jax.random.normal(k_bottleneck, (num_bottlenecks, hidden_size))
            if fusion == "bottleneck" and len(self.modalities) > 1
            else None
        )
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        # A zero head: every class starts at the same logit, as in Scenic's MBT.
        head = eqx.nn.Linear(hidden_size, num_classes, key=k_head)
        self.head = eqx.tree_at(lambda h: (h.weight, h.bias), head, (jnp.zeros_like(head.weight), head.bias))
        self.fusion, self.fusion_layer = fusion, fusion_layer

    def _check_inputs(self, inputs: object) -> int | None:
        """The number of views of `inputs` (None for one clip), once its entries are checked."""
        if not isinstance(inputs, Mapping) or not set(self.modalities) <= set(inputs):
            received = sorted(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
            raise ValueError(
                f"`inputs` must be a dict with the entries {self.modalities}. Received: {received}."
            )
        views = set()
        for m in self.modalities:
            expected = self.tokenizers[m].input_shape
            shape = tuple(getattr(inputs[m], "shape", ()))
            if shape[-len(expected) :] != expected or len(shape) not in (len(expected), len(expected) + 1):
                raise ValueError(
                    f'`inputs["{m}"]` must have shape {expected} (one clip) or (views, *{expected}) '
                    f"(several views of one example). Received: shape {shape}."
                )
            views.add(shape[0] if len(shape) > len(expected) else None)
        if len(views) > 1:
            raise ValueError(
                f"Every entry of `inputs` must hold one clip, or the same number of views. Received: "
                f"{ {m: tuple(inputs[m].shape) for m in self.modalities} }."
            )
        return views.pop()

    def _layer_keys(self, key: PRNGKeyArray | None) -> list[dict]:
        if key is None:
            return [dict.fromkeys(self.modalities) for _ in self.layers]
        keys = jax.random.split(key, (len(self.layers), len(self.modalities)))
        return [{m: keys[i, j] for j, m in enumerate(self.modalities)} for i in range(len(self.layers))]

    def features(self, inputs: Mapping[str, Array], *, key: PRNGKeyArray | None = None) -> dict:
        """Named intermediates of one clip.

        Arguments:
            inputs: `{"rgb": [time, height, width, channels], "spectrogram": [frames, mel]}`
                (the entries of `modalities`; others are ignored).
            key: drives dropout and stochastic depth in training; `None` in inference.

        Returns:
            `layers`: per layer, each modality's tokens after it (`[1 + patches, hidden]`,
            CLS first); `bottleneck`: the bottleneck tokens after the last layer (None
            without bottleneck fusion); `cls`: each modality's normalised CLS token;
            `modality_logits`: the head on each; `logits`: their mean `[num_classes]`.
        """
        if self._check_inputs(inputs) is not None:
            raise ValueError("`features` takes one clip; call the model for several views.")
        tokens = {m: self.tokenizers[m](inputs[m]) for m in self.modalities}
        bottleneck = self.bottleneck
        cross_modal = self.fusion != "late" and len(self.modalities) > 1
        out = {"layers": []}
        for index, (blocks, keys) in enumerate(zip(self.layers, self._layer_keys(key))):
            if not cross_modal or index < self.fusion_layer:
                tokens = _fusion.separate_layer(blocks, tokens, keys=keys)
            elif self.fusion == "bottleneck":
                tokens, bottleneck = _fusion.bottleneck_layer(blocks, tokens, bottleneck, keys=keys)
            else:
                tokens = _fusion.full_attention_layer(blocks, tokens, keys=keys)
            out["layers"].append(tokens)
        out["bottleneck"] = bottleneck
        out["cls"] = {m: self.norm(tokens[m][0]) for m in self.modalities}
        out["modality_logits"] = {m: self.head(out["cls"][m]) for m in self.modalities}
        out["logits"] = jnp.mean(jnp.stack(list(out["modality_logits"].values())), axis=0)
        return out

    def __call__(
        self, inputs: Mapping[str, Array], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " num_classes"]:
        """Logits of one clip, or the mean logits of an example's views.

        `inputs` as in `features`, or with a leading `views` axis on every entry (the
        test clips of a video, as `audiovisual_tfrecord` gives them with
        `num_test_clips > 1`), whose logits are averaged.
        """
        if self._check_inputs(inputs) is None:
            return self.features(inputs, key=key)["logits"]
        views = {m: inputs[m] for m in self.modalities}
        keys = None if key is None else jax.random.split(key, len(views[self.modalities[0]]))
        logits = jax.vmap(lambda x, k: self.features(x, key=k)["logits"])(views, keys)
        return jnp.mean(logits, axis=0)


nn.register("mbt", MBT, overwrite=True)
