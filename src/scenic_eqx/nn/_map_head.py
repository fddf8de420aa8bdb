"""Multihead attention pooling (MAP) with a learned probe."""

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from ._attention import MultiHeadDotProductAttention
from ._layer_norm import LayerNorm
from ._mlp_block import MlpBlock


class MAPHead(eqx.Module):
    """Pools tokens into one vector by attending from a learned probe.

    `y = attention(probe, x)`, then `y + mlp(norm(y))`, as in big_vision's ViT
    (Zhai et al. 2022, "Scaling Vision Transformers"; Lee et al. 2019, "Set
    Transformer").

    Arguments:
        dim: size of each token.
        num_heads: attention heads; must divide `dim` unless `head_dim` is given.
        mlp_dim: hidden size of the MLP.
        head_dim: size of each attention head; defaults to `dim / num_heads`.
        gelu_approximate: tanh-approximate GELU in the MLP (see `MlpBlock`).
        layer_norm_eps: epsilon of the layer norm.
        key: PRNG key for initialisation (keyword only).
    """

    probe: Float[Array, "1 dim"]
    attention: MultiHeadDotProductAttention
    norm: LayerNorm
    mlp: MlpBlock

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        head_dim: int | None = None,
        gelu_approximate: bool = False,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        k_probe, k_attention, k_mlp = jax.random.split(key, 3)
        self.probe = jax.nn.initializers.xavier_uniform()(k_probe, (1, dim))
        self.attention = MultiHeadDotProductAttention(dim, num_heads, head_dim=head_dim, key=k_attention)
        self.norm = LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = MlpBlock(dim, mlp_dim, gelu_approximate=gelu_approximate, key=k_mlp)

    def __call__(self, x: Float[Array, "tokens dim"]) -> Float[Array, " dim"]:
        """The pooled vector of the tokens `x`."""
        y = self.attention(self.probe.astype(x.dtype), x)
        y = y + self.mlp(self.norm(y))
        return y[0]
