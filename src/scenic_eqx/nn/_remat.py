"""Rematerialisation ("activation checkpointing") of a model's blocks, by a named policy.

Under `jax.grad` a network keeps the activations of every block until the backward pass
reaches it. Wrapping each block in `jax.checkpoint` keeps only what the policy saves
(nothing but the block's inputs, with `"nothing_saveable"`) and recomputes the rest of
the block in the backward pass: memory for one more forward pass (Chen et al. 2016,
"Training Deep Nets with Sublinear Memory Cost", https://arxiv.org/abs/1604.06174).

The policy is a name, not a function, so that a model can hold it in a static field
(hashable, and settable from a config as `model.remat_policy`).

On XLA:CPU the saving depends on how blocks are run. Inside `lax.scan`
(`scan_layers=True`) the recomputation is a loop of its own in the backward pass and
the saving is as designed (ViT-B/16, batch 8: 29% of the temporary memory without
remat). Unrolled blocks rely on the optimisation barrier `jax.checkpoint` puts before
the recomputation; XLA:CPU removes barriers early, common-subexpression elimination
then merges part of the recomputation back into the forward pass, and its default
scheduler (ordered for concurrency, not memory) runs the rest early: no saving.
Compiling with `xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED` recovers
much of it (49%). GPU and TPU compilers keep the barrier until after scheduling.
`benchmarks/remat_memory.py` measures all of this.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax

REMAT_POLICIES: dict[str, Callable[..., bool]] = {
    # Keep only the block's inputs: the most memory saved, one extra forward pass.
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    # Keep the outputs of matrix products (and convolutions); recompute the cheap
    # elementwise work around them.
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    # As above but not the products with a batch axis (e.g. attention's `q k^T` per head).
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # Keep everything: the memory of no remat, useful only as a reference.
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}
"""The accepted `remat_policy` names and the `jax.checkpoint_policies` they stand for."""


def check_remat_policy(remat_policy: Any) -> str | None:
    """Returns `remat_policy` if it is `None` or a name in `REMAT_POLICIES`.

    Raises:
        ValueError: for any other value, naming the valid ones.
    """
    if remat_policy is None or (isinstance(remat_policy, str) and remat_policy in REMAT_POLICIES):
        return remat_policy
    valid = ", ".join(repr(name) for name in REMAT_POLICIES)
    raise ValueError(
        f"`remat_policy` must be None (no rematerialisation) or one of {valid}; Received: {remat_policy!r}"
    )


def _call(module: Callable, *args: Any, **kwargs: Any) -> Any:
    return module(*args, **kwargs)


def remat_call(
    module: Callable,
    *args: Any,
    remat_policy: str | None,
    prevent_cse: bool = True,
    **kwargs: Any,
) -> Any:
    """`module(*args, **kwargs)`, rematerialised in the backward pass by `remat_policy`.

    The module's arrays (its weights) and the arrays among the arguments are the inputs
    of the checkpointed function; everything else (static fields, Python floats, `None`
    keys) is closed over, as `eqx.filter_checkpoint` does. State threaded through a block
    (BatchNorm's `eqx.nn.State`) goes in as an argument and comes back in the output.

    Arguments:
        module: the block to call, e.g. an `EncoderBlock`.
        *args, **kwargs: its arguments.
        remat_policy: a name from `REMAT_POLICIES`, or `None` to call the module as is.
        prevent_cse: keep XLA from merging the recomputation with the forward pass.
            Needed for unrolled blocks; inside `lax.scan` the loop already prevents it,
            and `False` there avoids the optimisation barriers' cost.

    Returns:
        What `module` returns.
    """
    if remat_policy is None:
        return module(*args, **kwargs)
    checkpointed = eqx.filter_checkpoint(_call, prevent_cse=prevent_cse, policy=REMAT_POLICIES[remat_policy])
    return checkpointed(module, *args, **kwargs)
