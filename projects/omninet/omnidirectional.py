"""The omnidirectional layer of OmniNet (Tay et al., "OmniNet: Omnidirectional Representations
from Transformers", ICML 2021, arXiv:2103.01075).

Given the outputs `X_1, ..., X_L` (`N` tokens each) of a group of transformer layers, the
paper's meta-learner computes

    O  = Attend(IndexSort(X_1, ..., X_L))    # all L x N tokens attend to each other
    O' = MaxPool1D(O)                        # per position, the maximum over the L layers

and the network continues from `X_L + O'`. `IndexSort` puts the `L` copies of each
position side by side (position-major order); the pooling windows of size `L` then each
cover one position. `Attend` is a transformer block (pre-LN self-attention and MLP, with
residuals) whose attention is efficient: here the Performer of `performer.py`, or exact
softmax attention, the paper's full-attention meta-learner, for comparison.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn, run

PerformerAttention = run.import_file(
    os.path.join(os.path.dirname(__file__), "performer.py")
).PerformerAttention

OMNI_ATTENTIONS = ("performer", "softmax")


@jaxtyped(typechecker=beartype)
def index_sort(layers: Float[Array, "layers tokens dim"]) -> Float[Array, "layers*tokens dim"]:
    """The tokens of every layer, position-major: `[x_1[0], ..., x_L[0], x_1[1], ...]`.

    Row `n * L + l` is token `n` of layer `l`, the paper's `IndexSort`.
    """
    return jnp.swapaxes(layers, 0, 1).reshape(-1, layers.shape[-1])


class OmnidirectionalLayer(eqx.Module):
    """`MaxPool1D(Attend(IndexSort(X_1, ..., X_L)))`: one token per position, seen from every layer.

    `Attend` is a pre-LN transformer block over the `L x N` index-sorted tokens: `z + attention(norm1(z))`,
    then `z + mlp(norm2(z))`; its attention lets each of the `L x N` tokens attend to all
    of them, across positions and layers. The max pooling keeps, per position and
    feature, the largest of the `L` layers' values.

    Arguments:
        dim: token size.
        num_heads: attention heads; must divide `dim`.
        mlp_dim: hidden size of the block's MLP.
        attention: `"performer"` (FAVOR+, linear in `L x N`) or `"softmax"` (exact,
            quadratic in `L x N`).
        num_features: random features of the Performer attention.
        dropout_rate: dropout in the MLP and after attention.
        drop_path_rate: stochastic depth rate of both residual branches.
        layer_norm_eps: epsilon of both layer norms.
        key: PRNG key for initialisation (keyword only).
    """

    norm1: nn.LayerNorm
    attention: PerformerAttention | nn.MultiHeadDotProductAttention
    norm2: nn.LayerNorm
    mlp: nn.MlpBlock
    dropout: eqx.nn.Dropout
    drop_path: nn.StochasticDepth

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        attention: str = "performer",
        num_features: int = 256,
        dropout_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        if attention not in OMNI_ATTENTIONS:
            raise ValueError(f"`attention` must be one of {OMNI_ATTENTIONS}. Received: {attention!r}.")
        k_attention, k_mlp = jax.random.split(key)
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        if attention == "performer":
            self.attention = PerformerAttention(dim, num_heads, num_features=num_features, key=k_attention)
        else:
            self.attention = nn.MultiHeadDotProductAttention(dim, num_heads, key=k_attention)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = nn.MlpBlock(dim, mlp_dim, dropout_rate=dropout_rate, key=k_mlp)
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.drop_path = nn.StochasticDepth(drop_path_rate)

    @jaxtyped(typechecker=beartype)
    def attend(
        self, tokens: Float[Array, "tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "tokens dim"]:
        """The block `Attend` on a sequence of (index-sorted) tokens; `key` drives dropout."""
        keys = [None] * 5 if key is None else list(jax.random.split(key, 5))
        z = tokens
        z = z + self.drop_path(
            self.dropout(self.attention(self.norm1(z), key=keys[0]), key=keys[1]), key=keys[2]
        )
        return z + self.drop_path(self.mlp(self.norm2(z), key=keys[3]), key=keys[4])

    @jaxtyped(typechecker=beartype)
    def __call__(
        self, layers: Float[Array, "layers tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "tokens dim"]:
        """The omnidirectional representation `O'` of a stack of layer outputs.

        Arguments:
            layers: `X_1, ..., X_L`, the outputs of `L` layers, stacked.
            key: PRNG key for dropout and stochastic depth in training.

        Returns:
            `O'`: per position, the maximum over the layers of `Attend(IndexSort(layers))`.
        """
        num_layers, num_tokens, dim = layers.shape
        attended = self.attend(index_sort(layers), key=key)
        return jnp.max(attended.reshape(num_tokens, num_layers, dim), axis=1)
