"""A small convolutional classifier: Scenic's `simple_cnn` baseline."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._input_checks import check_image


class SimpleCNN(eqx.Module):
    """`Conv -> ReLU` layers, global average pooling, then a linear head.

    Arguments:
        num_classes: number of output logits.
        in_channels: channels of the input image.
        num_filters: output channels of each convolution.
        kernel_size: side of every (square) kernel; convolutions keep the spatial size.
        key: PRNG key for initialisation (keyword only).
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    head: eqx.nn.Linear

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        num_filters: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        *,
        key: PRNGKeyArray,
    ):
        channels = [in_channels, *num_filters]
        keys = jax.random.split(key, len(num_filters) + 1)
        self.convs = tuple(
            eqx.nn.Conv2d(c_in, c_out, kernel_size, padding="SAME", key=k)
            for c_in, c_out, k in zip(channels[:-1], channels[1:], keys[:-1])
        )
        self.head = eqx.nn.Linear(channels[-1], num_classes, key=keys[-1])

    def features(self, x: Float[Array, "height width channels"]) -> dict[str, Array]:
        """Named intermediates: each conv block's map (channels last) and the pooled vector."""
        in_channels = self.convs[0].weight.shape[1] if self.convs else self.head.in_features
        check_image(x, model="SimpleCNN", in_channels=in_channels)
        h = jnp.moveaxis(x, -1, 0)  # Equinox convolutions are channels-first.
        out = {}
        for i, conv in enumerate(self.convs):
            h = jax.nn.relu(conv(h))
            out[f"conv_{i}"] = jnp.moveaxis(h, 0, -1)
        out["pre_logits"] = jnp.mean(h, axis=(1, 2))
        return out

    def __call__(
        self,
        x: Float[Array, "height width channels"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " num_classes"]:
        """Logits of one example; `key` is unused (the model has no randomness)."""
        del key
        return self.head(self.features(x)["pre_logits"])
