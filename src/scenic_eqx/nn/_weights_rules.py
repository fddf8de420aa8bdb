"""Renaming rules: checkpoint keys to module paths, with the layout change of each array.

A rule is `(pattern, target, convert)`: `pattern` is a regular expression matched
against the whole checkpoint key; `target` a module path template (`str.format`ted with
the pattern's named groups), or a tuple of them when one checkpoint array fills several
parameters (timm's fused `qkv`); `convert` maps the array to the module's layout (a
tuple of arrays for a tuple of targets).
"""

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

Target = str | tuple[str, ...]
Rule = tuple[str, Target, Callable[[np.ndarray], np.ndarray | tuple[np.ndarray, ...]]]
Converted = dict[str, tuple[np.ndarray, str]]


@dataclasses.dataclass(frozen=True)
class FamilyWeights:
    """How one model family reads published checkpoints: kept beside the family.

    Attributes:
        family: the family's name in messages (`"ViT"`).
        rules: renaming rules per checkpoint source: `"google"` (Flax `.npz`), `"timm"`
            and `"transformers"` (`.safetensors`), `"openai"` (OpenAI/open_clip CLIP
            state dicts); a source absent here is refused.
        npz_root: a key every Google checkpoint of the family has, that locates the
            parameters inside a training checkpoint (`"embedding/kernel"`).
        sets_numerics: the family has GELUs and LayerNorms whose form follows the
            checkpoint's source (exact or tanh GELU, LayerNorm eps).
        transformers_config: checks a transformers `config.json` (as a dict) against
            the family's architecture, given the checkpoint path for messages, and
            returns the numerics it sets, `(gelu_approximate, layer_norm_eps)` (and
            `quick_gelu` third, for CLIP), or None.
        fit: adapts the converted arrays to the model before they are assigned (stacks
            scanned blocks, resamples a position table): `fit(model, converted, path)`.
    """

    family: str
    rules: dict[str, list[Rule]]
    npz_root: str | None = None
    sets_numerics: bool = True
    transformers_config: (
        Callable[[dict, str], tuple[bool, float] | tuple[bool, float, bool] | None] | None
    ) = None
    fit: Callable[[Any, Converted, str], Converted] | None = None


# Equinox's BatchNorm divides its running averages by `1 - momentum**count` at inference
# (zero-debiasing); with a large count the factor is exactly 1 in float32, so imported
# statistics are used as they are, and fine-tuning updates them as torch would.
SETTLED_BATCH_COUNT = 10**6


def same(x: np.ndarray) -> np.ndarray:
    return x


def tokens(x: np.ndarray) -> np.ndarray:
    """`[1, n, dim]` (a class token, a probe, a position table) to `[n, dim]`."""
    return x.reshape(-1, x.shape[-1])


def dense_kernel(x: np.ndarray) -> np.ndarray:
    """Flax's `[in, out]` kernel to `eqx.nn.Linear`'s `[out, in]` weight."""
    return x.T


def conv_kernel(x: np.ndarray) -> np.ndarray:
    """Flax's `[h, w, in, out]` (HWIO) kernel to the `[out, in, h, w]` (OIHW) weight."""
    return x.transpose(3, 2, 0, 1)


def heads_in_kernel(x: np.ndarray) -> np.ndarray:
    """Flax's query/key/value kernel `[dim, heads, head_dim]` to `[heads * head_dim, dim]`."""
    return x.reshape(x.shape[0], -1).T


def heads_out_kernel(x: np.ndarray) -> np.ndarray:
    """Flax's output kernel `[heads, head_dim, dim]` to `[dim, heads * head_dim]`."""
    return x.reshape(-1, x.shape[-1]).T


def flat(x: np.ndarray) -> np.ndarray:
    """A per-head bias `[heads, head_dim]` to `[heads * head_dim]`."""
    return x.reshape(-1)


def split(parts: int) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """Splits a fused projection (rows `[q; k; v]` of a torch weight or bias)."""

    def convert(x: np.ndarray) -> tuple[np.ndarray, ...]:
        if x.shape[0] % parts:
            raise ValueError(f"cannot split an array of shape {x.shape} into {parts} parts")
        return tuple(np.split(x, parts, axis=0))

    return convert


def running_mean(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x, np.asarray(SETTLED_BATCH_COUNT, np.int32)


def batch_norm(src: str, dst: str) -> list[Rule]:
    """A torch `BatchNorm2d` to an `eqx.nn.BatchNorm(mode="batch")`, state included."""
    state = dst + ".batch_state_index.init"
    return [
        (src + r"\.weight", dst + ".weight", same),
        (src + r"\.bias", dst + ".bias", same),
        (src + r"\.running_mean", (state + "[0]", dst + ".batch_counter.init"), running_mean),
        (src + r"\.running_var", state + "[1]", same),
        # A count of torch's updates; Equinox's counter is set with the mean above.
        (src + r"\.num_batches_tracked", (), lambda x: ()),
    ]


def torch_linear(src: str, dst: str) -> list[Rule]:
    """A torch `Linear` or `LayerNorm` (`weight`, `bias`) in the same layout."""
    return [(src + r"\.weight", dst + ".weight", same), (src + r"\.bias", dst + ".bias", same)]


def flax_layer_norm(src: str, dst: str) -> list[Rule]:
    """A Flax `LayerNorm` (`scale`, `bias`) to ours (`weight`, `bias`)."""
    return [(src + "/scale", dst + ".weight", same), (src + "/bias", dst + ".bias", same)]


def flax_dense(src: str, dst: str) -> list[Rule]:
    """A Flax `Dense` (`kernel` `[in, out]`, `bias`) to an `eqx.nn.Linear`."""
    return [(src + "/kernel", dst + ".weight", dense_kernel), (src + "/bias", dst + ".bias", same)]


def flax_mlp(src: str, dst: str) -> list[Rule]:
    """A Flax `MlpBlock` (`Dense_0`, `Dense_1`) to an `MlpBlock` (`dense1`, `dense2`)."""
    return flax_dense(src + "/Dense_0", dst + ".dense1") + flax_dense(src + "/Dense_1", dst + ".dense2")


def flax_attention(src: str, dst: str) -> list[Rule]:
    """A Flax `MultiHeadDotProductAttention` (per-head kernels) to ours (fused heads)."""
    rules: list[Rule] = []
    for name in ("query", "key", "value"):
        rules.append((f"{src}/{name}/kernel", f"{dst}.{name}.weight", heads_in_kernel))
        rules.append((f"{src}/{name}/bias", f"{dst}.{name}.bias", flat))
    rules.append((f"{src}/out/kernel", f"{dst}.out.weight", heads_out_kernel))
    rules.append((f"{src}/out/bias", f"{dst}.out.bias", same))
    return rules


def apply_rules(
    arrays: dict[str, np.ndarray], rules: Iterable[Rule]
) -> tuple[dict[str, tuple[np.ndarray, str]], list[str]]:
    """Renames and converts the checkpoint `arrays` by the first rule matching each key.

    Returns:
        `{module path: (array, checkpoint key)}` and the checkpoint keys no rule matched.

    Raises:
        ValueError: when two checkpoint keys fill the same module path.
    """
    compiled = [(re.compile(pattern), target, convert) for pattern, target, convert in rules]
    out: dict[str, tuple[np.ndarray, str]] = {}
    unmatched = []
    for key, value in arrays.items():
        for pattern, target, convert in compiled:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            targets = (target,) if isinstance(target, str) else target
            values = convert(value)
            values = (values,) if isinstance(target, str) else values
            for template, array in zip(targets, values, strict=True):
                path = template.format(**match.groupdict())
                if path in out:
                    raise ValueError(
                        f"Checkpoint keys {out[path][1]!r} and {key!r} both map to the "
                        f"parameter `{path}`; the file mixes two layouts."
                    )
                out[path] = (array, key)
            break
        else:
            unmatched.append(key)
    return out, unmatched
