"""Parameter sharding by rules on parameter paths: replicated, FSDP or tensor parallel.

A `("data", "model")` device mesh (`device_mesh`) carries both kinds of parallelism:
batches are split on `"data"`; each parameter gets a `PartitionSpec` chosen by the first
rule whose regular expression matches its path. XLA's SPMD partitioner then runs the
same one-example module code replicated, FSDP-sharded (Rajbhandari et al. 2020, ZeRO-3;
as big_vision's `fsdp` rule) or tensor-parallel (Shoeybi et al. 2019, Megatron-LM),
inserting the all-gathers and reductions itself: nothing here is a collective.

Paths are `jax.tree_util.keystr` without the leading `.`, e.g.
`encoder.blocks[3].attention.query.weight`; with `scan_layers=True` the blocks are one
stacked block, `encoder.blocks.attention.query.weight`, whose arrays have a leading
`num_layers` axis. A rule is `(pattern, spec)`:

- `pattern` must match the WHOLE path (`re.fullmatch`), so a rule covers exactly the
  paths it spells out (`"mlp\\.dense1\\.weight"` does not catch `map_head.mlp...`;
  write `".*mlp\\.dense1\\.weight"` for every block). The first matching rule wins;
  unmatched parameters are replicated.
- `spec` is a `PartitionSpec` for the parameter's TRAILING dimensions (leading extra
  dimensions, such as a scanned layer axis, are not sharded), or `"fsdp"`, or
  `"replicated"`.

The shardings computed here are applied by `place` and `create_sharded` (`_placement`).
"""

import math
import re
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec, Sharding
from jaxtyping import PyTree

from ._train_state import TrainState, partition_trainable

Rule = tuple[str, PartitionSpec | str]
"""`(pattern, spec)`: a regular expression fully matching a parameter path, and the
`PartitionSpec` of its trailing dimensions, `"fsdp"` or `"replicated"`."""

ShardingChoice = str | Sequence[tuple]
"""`"replicated"`, `"fsdp"`, `"megatron"`, or a sequence of `Rule`s (annotated as tuples:
each rule is checked, and a malformed one echoed, by `parameter_shardings`)."""

FSDP_MIN_SIZE = 2**16
"""Parameters with fewer elements stay replicated under `"fsdp"`: 64Ki float32 scalars
are 256 KiB, where gathering a shard costs more in latency than its memory is worth
(biases, norms, small embeddings). big_vision's `fsdp` rule has no threshold; ZeRO
implementations keep one for the same reason."""

# Any prefix ending in a dot, so the rules also match inside other trees (a `MAPHead`, a
# decoder, an optimizer state's `mu.encoder...`).
_ATTENTION = r"(.*\.)?(self_|cross_)?attention"
_MLP = r"(.*\.)?(mlp|token_mixing|channel_mixing)"

MEGATRON_RULES: tuple[Rule, ...] = (
    # Column-parallel: the query/key/value projections split their output (heads) axis,
    # so each device computes whole heads when `num_heads` divides the `"model"` size.
    (rf"{_ATTENTION}\.(query|key|value)\.weight", PartitionSpec("model", None)),
    (rf"{_ATTENTION}\.(query|key|value)\.bias", PartitionSpec("model")),
    # Row-parallel: the output projection splits its input axis; XLA sums the partial
    # products over `"model"`. Its bias is added once, after the sum: replicated.
    (rf"{_ATTENTION}\.out\.weight", PartitionSpec(None, "model")),
    # The MLP (`MlpBlock` of encoder, decoder and MAP blocks, both mixings of a
    # `MixerBlock`): dense1 column-parallel, dense2 row-parallel.
    (rf"{_MLP}\.dense1\.weight", PartitionSpec("model", None)),
    (rf"{_MLP}\.dense1\.bias", PartitionSpec("model")),
    (rf"{_MLP}\.dense2\.weight", PartitionSpec(None, "model")),
)
"""Megatron-LM tensor parallelism (Shoeybi et al. 2019, Section 3) over the `"model"`
axis for the attention and MLP blocks of `nn.ViT`, `nn.ViViT`, `nn.MlpMixer`,
`nn.TransformerEncoderDecoder` / `nn.Decoder` and `nn.MAPHead`. Linear weights are
`[out_features, in_features]`. Norms, embeddings, heads and the biases of `out` and
`dense2` match no rule: alone they are replicated; after these rules in a sequence
(`[*MEGATRON_RULES, (".*", "fsdp")]`) they follow the later rules."""

_NAMED: dict[str, tuple[Rule, ...]] = {
    "replicated": (),
    "fsdp": ((".*", "fsdp"),),
    "megatron": MEGATRON_RULES,
}


def device_mesh(model_axis_size: int = 1, devices: Sequence[jax.Device] | np.ndarray | None = None) -> Mesh:
    """A 2-D mesh `("data", "model")` of shape `(num_devices // model_axis_size, model_axis_size)`.

    By default it spans every device of every host, ordered by host then device id and
    laid out row-major: each `"model"` group is `model_axis_size` consecutive devices of
    one host (when it divides the host's device count) and a host's devices are adjacent
    on `"data"`. Pass `devices` to choose the order (e.g. the flattened
    `jax.experimental.mesh_utils.create_device_mesh(...)` of a TPU topology); they are
    laid out as given.

    Both axes are `AxisType.Auto`: XLA's partitioner propagates shardings through the
    model, which stays free of sharding annotations.

    Arguments:
        model_axis_size: devices per tensor-parallel group; `1` for data parallelism
            (with replicated or FSDP parameters) only.
        devices: the devices (a sequence, or an array read in row-major order);
            default every device of every host.

    Returns:
        The mesh.

    Raises:
        ValueError: if `model_axis_size` is not a positive divisor of the device count.
    """
    if devices is None:
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    devices = list(np.asarray(devices, dtype=object).reshape(-1))
    if not isinstance(model_axis_size, int) or model_axis_size < 1 or len(devices) % model_axis_size:
        raise ValueError(
            f"`model_axis_size` (={model_axis_size!r}) must be a positive divisor of the "
            f"number of devices (={len(devices)})."
        )
    grid = np.asarray(devices, dtype=object).reshape(-1, model_axis_size)
    return Mesh(grid, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


def is_array_like(x) -> bool:
    """Whether `x` is an array or a `jax.ShapeDtypeStruct` (a leaf that gets a sharding)."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct))


def _path_name(path) -> str:
    return jax.tree_util.keystr(path).removeprefix(".")


def _mesh_shape(mesh: Mesh) -> dict[str, int]:
    return dict(mesh.shape)


def _rules(sharding: ShardingChoice) -> list[tuple[re.Pattern, PartitionSpec | str]]:
    """Validates `sharding` and compiles its patterns."""
    if isinstance(sharding, str):
        if sharding not in _NAMED:
            raise ValueError(
                f"`sharding` (={sharding!r}) must be one of {sorted(_NAMED)} or a sequence "
                "of (pattern, spec) rules."
            )
        sharding = _NAMED[sharding]
    compiled = []
    for rule in sharding:
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ValueError(
                "Each `sharding` rule must be a pair (pattern: str, spec: PartitionSpec | "
                f"'fsdp' | 'replicated'). Received: {rule!r}."
            )
        pattern, spec = rule
        if not (isinstance(spec, PartitionSpec) or spec in ("fsdp", "replicated")):
            raise ValueError(
                f"The spec of `sharding` rule {pattern!r} must be a PartitionSpec, 'fsdp' or "
                f"'replicated'. Received: {spec!r}."
            )
        try:
            compiled.append((re.compile(pattern), spec))
        except re.error as e:
            raise ValueError(
                f"The pattern of `sharding` rule {pattern!r} is not a valid regular expression ({e})."
            ) from None
    return compiled


def _spec_error(path: str, shape, spec, rule: str, mesh: Mesh, why: str) -> ValueError:
    return ValueError(
        f"`sharding` rule {rule!r} gives parameter `{path}` (shape {tuple(shape)}) the spec "
        f"{spec}, but {why} (mesh shape {_mesh_shape(mesh)})."
    )


def _trailing_spec(path: str, shape, spec: PartitionSpec, rule: str, mesh: Mesh) -> PartitionSpec:
    """`spec` for the trailing dimensions of `shape`, checked against `mesh`."""
    if len(spec) > len(shape):
        raise _spec_error(
            path, shape, spec, rule, mesh, f"it has {len(shape)} dimensions, fewer than the spec"
        )
    full = (None,) * (len(shape) - len(spec)) + tuple(spec)
    used: list[str] = []
    for dim, entry in zip(shape, full):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        for axis in axes:
            if axis not in mesh.shape:
                raise _spec_error(path, shape, spec, rule, mesh, f"the mesh has no axis {axis!r}")
            if axis in used:
                raise _spec_error(path, shape, spec, rule, mesh, f"axis {axis!r} is used twice")
            used.append(axis)
        size = math.prod(mesh.shape[a] for a in axes)
        if dim % size:
            raise _spec_error(
                path,
                shape,
                spec,
                rule,
                mesh,
                f"dimension {dim} is not divisible by the size of {entry!r} (={size})",
            )
    return PartitionSpec(*full)


def _fsdp_spec(shape, data_size: int, min_size: int) -> PartitionSpec | None:
    """The largest dimension divisible by `data_size` on `"data"`; ties go to the last
    dimension (as big_vision). `None` when the leaf is too small or indivisible."""
    if math.prod(shape) < min_size:
        return None
    for i in sorted(range(len(shape)), key=lambda i: (shape[i], i), reverse=True):
        if shape[i] % data_size == 0:
            return PartitionSpec(*(("data" if j == i else None) for j in range(len(shape))))
    return None


def parameter_shardings(
    tree: PyTree,
    mesh: Mesh,
    sharding: ShardingChoice,
    *,
    fsdp_min_size: int = FSDP_MIN_SIZE,
) -> tuple[PyTree, dict[str, tuple[int, ...]]]:
    """A `NamedSharding` for every array of `tree`, chosen by rules on its path.

    Arguments:
        tree: an `eqx.Module` or any pytree of arrays or `jax.ShapeDtypeStruct`s (e.g.
            `partition_trainable(model)[0]`, or `eqx.filter_eval_shape` of a constructor).
        mesh: the device mesh, usually from `device_mesh`.
        sharding: `"replicated"`; `"fsdp"` (every parameter of at least `fsdp_min_size`
            elements has its largest dimension divisible by the `"data"` size split over
            `"data"`, ties to the last dimension); `"megatron"` (`MEGATRON_RULES`, the
            rest replicated); or a sequence of `Rule`s (module docstring).
        fsdp_min_size: parameters with fewer elements stay replicated under an `"fsdp"`
            rule (default `FSDP_MIN_SIZE`, 2**16).

    Returns:
        `(shardings, replicated)`: `shardings` has the structure of
        `eqx.filter(tree, is_array)` (a `NamedSharding` at each array, `None` in place
        of every other leaf), ready for `jax.jit(out_shardings=...)`, `place` and
        `eqx.combine`; `replicated` maps the path of each parameter that an `"fsdp"`
        rule left replicated (too small, or no divisible dimension) to its shape, so a
        trainer can log "N small parameters (M scalars) replicated".

    Raises:
        ValueError: for an unknown `sharding`, a malformed rule, or a spec naming an axis
            the mesh lacks, longer than the parameter's rank, or splitting a dimension
            that the axis size does not divide (naming the path, shape, spec and mesh).
    """
    rules = _rules(sharding)
    if not isinstance(fsdp_min_size, int) or fsdp_min_size < 0:
        raise ValueError(f"`fsdp_min_size` (={fsdp_min_size!r}) must be a non-negative integer.")
    replicated = NamedSharding(mesh, PartitionSpec())
    report: dict[str, tuple[int, ...]] = {}

    def choose(path, leaf):
        if not is_array_like(leaf):
            return None
        name, shape = _path_name(path), tuple(leaf.shape)
        for pattern, spec in rules:  # noqa: B007 (`spec` of the rule that matched)
            if pattern.fullmatch(name):
                break
        else:
            return replicated
        if spec == "replicated":
            return replicated
        if spec == "fsdp":
            if "data" not in mesh.shape:
                why = "the mesh has no axis 'data'"
                raise _spec_error(name, shape, spec, pattern.pattern, mesh, why)
            fsdp = _fsdp_spec(shape, mesh.shape["data"], fsdp_min_size)
            if fsdp is None:
                report[name] = shape
                return replicated
            return NamedSharding(mesh, fsdp)
        return NamedSharding(mesh, _trailing_spec(name, shape, spec, pattern.pattern, mesh))

    shardings = jax.tree_util.tree_map_with_path(choose, tree)
    return shardings, report


def opt_state_shardings(
    optimizer: optax.GradientTransformation,
    opt_state: PyTree,
    param_shardings: PyTree,
    mesh: Mesh,
) -> PyTree:
    """Shardings of an optax state: every copy of the parameters follows `param_shardings`.

    Adam's `mu` and `nu`, momentum traces, EMA copies... are found by
    `optax.tree_map_params` (through `chain`, `multi_transform`, `masked`,
    `inject_hyperparams`); every other array (step counts, hyperparameters) is
    replicated. `optax.MaskedNode`s (the parameters a `masked` transformation skips)
    stay as they are.

    Arguments:
        optimizer: the transformation that made `opt_state`.
        opt_state: its state, arrays or `jax.ShapeDtypeStruct`s.
        param_shardings: the shardings of the parameters `opt_state` was initialised
            with (`parameter_shardings` of those parameters).
        mesh: the device mesh.

    Returns:
        A pytree of `NamedSharding`s (and `None` for non-array leaves) shaped like
        `opt_state`.
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def follow(value, sharding):
        if value is None or isinstance(value, optax.MaskedNode):
            return value
        if not isinstance(sharding, Sharding):
            raise ValueError(
                "`param_shardings` must hold a sharding at every parameter array of the "
                f"optimizer state. Received: {sharding!r} for an array of shape "
                f"{tuple(value.shape)}."
            )
        return sharding

    return optax.tree_map_params(
        optimizer,
        follow,
        opt_state,
        param_shardings,
        transform_non_params=lambda x: replicated if is_array_like(x) else None,
        is_leaf=lambda x: x is None or isinstance(x, optax.MaskedNode),
    )


def train_state_shardings(
    state: TrainState,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    sharding: ShardingChoice,
    *,
    fsdp_min_size: int = FSDP_MIN_SIZE,
) -> tuple[PyTree, dict[str, tuple[int, ...]]]:
    """Shardings of a `TrainState`: the rules on the trainable arrays, the optimizer state
    following them, everything else (BatchNorm state, non-trainable arrays, step, key)
    replicated.

    Arguments:
        state: the train state, arrays or `jax.ShapeDtypeStruct`s.
        optimizer: the transformation that made `state.opt_state`.
        mesh, sharding, fsdp_min_size: as in `parameter_shardings`; parameter paths are
            those of the model (`encoder.blocks[0]...`).

    Returns:
        `(shardings, replicated)`: a pytree shaped like `eqx.filter(state, is_array)`,
        and the report of `parameter_shardings`.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    everywhere = lambda tree: jax.tree.map(lambda x: replicated if is_array_like(x) else None, tree)
    params, rest = partition_trainable(state.model)
    param_sh, report = parameter_shardings(params, mesh, sharding, fsdp_min_size=fsdp_min_size)
    model_sh = eqx.combine(param_sh, everywhere(rest))
    opt_sh = opt_state_shardings(optimizer, state.opt_state, param_sh, mesh)
    # Every other field (model state, step, key, any later addition) is replicated.
    shardings = everywhere(state)
    shardings = eqx.tree_at(lambda s: (s.model, s.opt_state), shardings, (model_sh, opt_sh))
    return shardings, report
