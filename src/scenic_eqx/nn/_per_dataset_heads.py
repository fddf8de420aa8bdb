"""One shared model and a head of its own for each co-trained dataset (PolyViT)."""

import re
from collections.abc import Mapping

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray, PyTree

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _is_none(x) -> bool:
    return x is None


class PerDatasetHeads(eqx.Module):
    """A model whose head is swapped for each dataset it is co-trained on.

    Every parameter but the head is shared. Called on one example of a co-training
    batch (`data.co_training_batches`), `{dataset_name: that dataset's example}`, it
    returns `{dataset_name: outputs}`: each dataset's example through the shared model
    with that dataset's head (`view(name)`), as `tasks.CoTrainingTask` expects. The
    model's own head is dropped: pass it in `heads` to keep it for one dataset, so
    that this model starts as that dataset's single-dataset model does.

    ```python
    vit = nn.ViT(num_classes=10, ..., key=k1)
    model = nn.PerDatasetHeads(vit, {"digits": vit.head, "mnist": eqx.nn.Linear(d, 10, key=k2)})
    ```

    Arguments:
        model: the shared model, with its head at attribute `head_name`.
        heads: `{dataset_name: head}`: modules taking what the model's head takes.
            Names are letters, digits and underscores.
        head_name: the model's attribute that holds its head (`"head"` for ViT,
            ResNet, Mixer, BiT).

    With a stateful model (BatchNorm), call it as `model(x, state, key=...)`: the
    datasets run one after another in the order of their sorted names, each updating
    the state in turn. Dropout in dataset `i` (of the sorted names) draws from
    `fold_in(key, i)`, independent of the other datasets' draws.

    Reference: Likhosherstov et al., "PolyViT: Co-training Vision Transformers on
    Images, Videos and Audio", 2021.
    """

    model: eqx.Module
    heads: dict[str, eqx.Module]
    head_name: str = eqx.field(static=True)

    def __init__(self, model: eqx.Module, heads: Mapping[str, eqx.Module], head_name: str = "head"):
        if not isinstance(model, eqx.Module) or not hasattr(model, head_name):
            raise ValueError(
                f"`model` must be an Equinox module with its head at attribute `head_name` "
                f"(={head_name!r}). Received: {type(model).__name__} without `{head_name}`."
            )
        if not isinstance(heads, Mapping) or not heads:
            raise ValueError(
                f"`heads` must be a non-empty dict `{{dataset_name: head}}`. Received: {heads!r}."
            )
        for name in heads:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ValueError(
                    "`heads`: dataset names must be letters, digits and underscores, starting with a "
                    f"letter. Received: {name!r}."
                )
        self.model = eqx.tree_at(lambda m: getattr(m, head_name), model, None)
        self.heads = dict(heads)
        self.head_name = head_name

    def view(self, name: str) -> eqx.Module:
        """The single-dataset model of dataset `name`: the shared model with its head."""
        if name not in self.heads:
            raise KeyError(f"`name` must be one of the datasets {sorted(self.heads)}. Received: {name!r}.")
        return eqx.tree_at(
            lambda m: getattr(m, self.head_name), self.model, self.heads[name], is_leaf=_is_none
        )

    def __call__(
        self,
        x: Mapping[str, PyTree],
        state: eqx.nn.State | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> dict[str, PyTree] | tuple[dict[str, PyTree], eqx.nn.State]:
        """`{dataset_name: view(dataset_name)(x[dataset_name])}` (and the state).

        Arguments:
            x: one example of each dataset, `{dataset_name: example}`.
            state: the shared model's `eqx.nn.State`, for a stateful model.
            key: PRNG key for dropout; `None` in inference.
        """
        if not isinstance(x, Mapping) or set(x) != set(self.heads):
            received = sorted(x) if isinstance(x, Mapping) else type(x).__name__
            raise ValueError(
                f"PerDatasetHeads: the input must be a dict with an example of each dataset "
                f"{sorted(self.heads)} (a co-training batch). Received: {received}."
            )
        outputs = {}
        for index, name in enumerate(sorted(self.heads)):
            own_key = None if key is None else jax.random.fold_in(key, index)
            if state is None:
                outputs[name] = self.view(name)(x[name], key=own_key)
            else:
                outputs[name], state = self.view(name)(x[name], state, key=own_key)
        return outputs if state is None else (outputs, state)
