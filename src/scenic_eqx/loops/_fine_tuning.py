"""Fine-tuning controls by parameter path: frozen parameters and weight-decay masks."""

import re
from collections.abc import Sequence

import jax
import optax
from jaxtyping import PyTree

NO_WEIGHT_DECAY: tuple[str, ...] = ("pos_embedding", "posemb", "cls_token", "probe", "query_embedding")
"""Path patterns that `weight_decay_mask` exempts besides every 1-D array: position
embeddings, class tokens, attention-pooling probes and DETR's object queries."""


def parameter_path(path) -> str:
    """A tree path as a dotted name: `encoder.blocks[0].attention.query.weight`."""
    return jax.tree_util.keystr(path).lstrip(".")


def is_placeholder(params: PyTree) -> bool:
    """Whether `params` holds no parameter array (optax's placeholder, or no parameters).

    `optax.tree_map_params` (which lays the optimizer state out like the parameters)
    calls `optimizer.init` on one placeholder object, an empty pytree: a labelling
    function of `optax.multi_transform` then gives it one label instead of checking
    paths that are not there.
    """
    return not jax.tree.leaves(params)


def _matching(params: PyTree, patterns: Sequence[str], argument: str) -> PyTree:
    """A tree of bools: whether each leaf's path matches (`re.search`) one of `patterns`.

    Raises:
        ValueError: a pattern is not a valid regular expression or matches no path.
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise ValueError(
                f"`{argument}` holds an invalid regular expression. Received: {pattern!r} ({error})."
            ) from None
    used = set()

    def matches(path, _) -> bool:
        name = parameter_path(path)
        hits = {p.pattern for p in compiled if p.search(name)}
        used.update(hits)
        return bool(hits)

    flags = jax.tree_util.tree_map_with_path(matches, params)
    unused = [p for p in patterns if p not in used]
    if unused:
        example = parameter_path(jax.tree_util.tree_leaves_with_path(params)[0][0])
        raise ValueError(
            f"`{argument}` patterns {unused} match no trainable parameter path (paths look "
            f"like {example!r}). Received: {list(patterns)!r}."
        )
    return flags


def freeze(optimizer: optax.GradientTransformation, patterns: Sequence[str]) -> optax.GradientTransformation:
    """`optimizer` with the parameters whose path matches one of `patterns` frozen.

    A frozen parameter gets a zero update and carries no optimizer state (no Adam
    moments, no weight decay); XLA drops the unused part of its gradient computation.

    Arguments:
        optimizer: the optax transformation for the other parameters.
        patterns: regular expressions searched in each parameter's dotted path, e.g.
            `("^embedding", r"^encoder\\.blocks\\[[0-5]\\]")`. Each must match a path.

    Returns:
        An optax transformation (`optax.multi_transform` of `optimizer` and
        `optax.set_to_zero`).
    """
    if isinstance(patterns, str):
        raise ValueError(f"`frozen` must be a sequence of patterns, not one string. Received: {patterns!r}.")
    patterns = tuple(patterns)

    def labels(params):
        if is_placeholder(params):
            return "trained"
        flags = _matching(params, patterns, "frozen")
        return jax.tree.map(lambda frozen: "frozen" if frozen else "trained", flags)

    return optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, labels)


def weight_decay_mask(params: PyTree, exclude: Sequence[str] = NO_WEIGHT_DECAY) -> PyTree:
    """Which parameters weight decay applies to: arrays of two or more dimensions
    (kernels, embeddings) whose path matches none of `exclude`.

    Biases, norm scales and shifts (1-D) and, by default, position embeddings, class
    tokens, pooling probes and object queries are not decayed (as in BERT, Devlin et al.
    2019, and big_vision). Pass it as the `mask` of `optax.adamw` or
    `optax.add_decayed_weights`; a pattern that matches no path is not an error here.

    Arguments:
        params: the trainable arrays.
        exclude: regular expressions searched in each parameter's dotted path.

    Returns:
        A tree of bools shaped like `params`.
    """
    compiled = [re.compile(p) for p in exclude]

    def decays(path, leaf) -> bool:
        name = parameter_path(path)
        return leaf.ndim >= 2 and not any(p.search(name) for p in compiled)

    return jax.tree_util.tree_map_with_path(decays, params)
