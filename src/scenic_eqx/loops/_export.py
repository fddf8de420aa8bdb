"""A trained model as a serialised `jax.export` artifact, which runs without the model's code.

`export_model` writes two files: the artifact (`Exported.serialize()`: the model's
StableHLO program, its parameters inside as constants) and a JSON description beside it,
`PATH.json`:

    {"format": "scenic_eqx.exported_model/1", "sha256": "...", "num_bytes": 92556,
     "input": {"shape": ["b", 16, 16, 3], "dtype": "float32"},
     "outputs": {"tree": "PyTreeDef(*)", "leaves": [{"shape": ["b", 10], "dtype": "float32"}]},
     "platforms": ["cpu"], "jax_version": "...", "scenic_eqx_version": "..."}

`load_exported` checks the artifact against the recorded sha256, then deserialises it
with `jax.export.deserialize`: it needs jax and numpy only. A program without scenic_eqx
can do the same with `jax.export.deserialize(open(PATH, "rb").read()).call(batch)`.
"""

import hashlib
import json
import os
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from ._apply import apply_model
from ._train_state import has_state

FORMAT = "scenic_eqx.exported_model/1"
# The platforms `jax.export` lowers for (GPUs by their runtime, not as "gpu").
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_BATCH_AXIS = "b"


def _description_path(path: str) -> str:
    return os.fspath(path) + ".json"


def check_export_arguments(
    input_shape: Sequence[int], input_dtype, batch_size: int | None, platforms: Sequence[str] | None
) -> tuple[tuple[int, ...], np.dtype, tuple[str, ...]]:
    """`input_shape`, `input_dtype` and `platforms` normalised (platforms default: the
    current backend's), after checking every export argument.

    Raises:
        ValueError: an argument that names its problem and the value received.
    """
    if not (
        isinstance(input_shape, Sequence)
        and all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be the shape of one example, without the batch axis: positive "
            "ints, e.g. (224, 224, 3) (a dataset's `meta_data.input_shape[1:]`). "
            f"Received: {input_shape!r}."
        )
    try:
        dtype = np.dtype(input_dtype)
    except TypeError:
        raise ValueError(
            f"`input_dtype` must be a dtype, e.g. jnp.float32. Received: {input_dtype!r}."
        ) from None
    if batch_size is not None and not (
        isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive int, or None for any batch size. Received: {batch_size!r}."
        )
    if platforms is None:
        platforms = (jax.export.default_export_platform(),)
    if isinstance(platforms, str) or not platforms or any(p not in PLATFORMS for p in platforms):
        raise ValueError(
            f"`platforms` must be a non-empty sequence of {', '.join(map(repr, PLATFORMS))} (a GPU is "
            f"'cuda' or 'rocm'), or None for this machine's. Received: {platforms!r}."
        )
    return tuple(int(d) for d in input_shape), dtype, tuple(platforms)


def check_model_state(model: eqx.Module, model_state: eqx.nn.State | None) -> None:
    """Raises a ValueError if `model` holds BatchNorm statistics and `model_state` is None
    (inference would silently use the statistics a fresh state starts with)."""
    if model_state is None and has_state(model):
        raise ValueError(
            "`model_state` must be given for a model with `eqx.nn.State` (BatchNorm statistics): "
            "its running averages are what inference uses. Received: None."
        )


def batched_inference(
    model: eqx.Module, model_state: eqx.nn.State | None
) -> Callable[[Array], PyTree[Array]]:
    """`model` in inference mode, batched with `jax.vmap(..., axis_name="batch")`: a function
    of a batch of inputs, returning outputs with a leading batch axis."""
    model = eqx.nn.inference_mode(model)
    return lambda inputs: apply_model(model, model_state, inputs, key=None)[0]


def input_spec(input_shape: tuple[int, ...], dtype: np.dtype, batch_size: int | None) -> jax.ShapeDtypeStruct:
    """A batch of inputs: `batch_size` examples, or a symbolic number `b` when it is None."""
    batch = jax.export.symbolic_shape(_BATCH_AXIS) if batch_size is None else (batch_size,)
    return jax.ShapeDtypeStruct((*batch, *input_shape), dtype)


def _shape(shape) -> list[int | str]:
    """A shape as JSON: ints, and symbolic sizes by name (`"b"`)."""
    return [int(d) if isinstance(d, int | np.integer) else str(d) for d in shape]


def export_model(
    model: eqx.Module,
    path: str,
    *,
    input_shape: Sequence[int],
    input_dtype=jnp.float32,
    model_state: eqx.nn.State | None = None,
    batch_size: int | None = None,
    platforms: Sequence[str] | None = None,
) -> str:
    """Exports `model` with `jax.export`: a file that runs without the model's Python code.

    The model runs in inference mode (`eqx.nn.inference_mode`: no dropout or stochastic
    depth; BatchNorm uses `model_state`'s running statistics), on a batch, through
    `jax.vmap(..., axis_name="batch")` as in the training loops. Its parameters are
    constants of the exported program.

    Arguments:
        model: a one-example model, `model(x, *, key)` or, with `model_state`,
            `model(x, state, *, key) -> (outputs, state)`.
        path: the file to write; `PATH.json` beside it describes it (input and output
            shapes, platforms, versions, the artifact's sha256).
        input_shape: the shape of one example, without the batch axis, e.g.
            `(224, 224, 3)`: a dataset's `meta_data.input_shape[1:]`.
        input_dtype: the dtype of the inputs.
        model_state: the model's `eqx.nn.State`; required for a model that has one.
        batch_size: the batch size the artifact accepts; None (the default): any batch
            size (a symbolic batch axis `b`).
        platforms: where the artifact may run, from `"cpu"`, `"cuda"`, `"rocm"`,
            `"tpu"` (e.g. `("cpu", "cuda")`); None: this machine's default backend.

    Returns:
        `path`.

    Raises:
        ValueError: a malformed argument; or the model's own error when it cannot take
            inputs of `input_shape` (raised here, while tracing, not when called).
    """
    input_shape, dtype, platforms = check_export_arguments(input_shape, input_dtype, batch_size, platforms)
    check_model_state(model, model_state)
    # On the host, the parameters are constants of the program whatever devices they lived on.
    function = batched_inference(*jax.device_get((model, model_state)))
    exported = jax.export.export(jax.jit(function), platforms=platforms)(
        input_spec(input_shape, dtype, batch_size)
    )
    serialized = exported.serialize()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(serialized)
    from .. import __version__

    description = {
        "format": FORMAT,
        "sha256": hashlib.sha256(serialized).hexdigest(),
        "num_bytes": len(serialized),
        "input": {"shape": _shape(exported.in_avals[0].shape), "dtype": str(exported.in_avals[0].dtype)},
        "outputs": {
            "tree": str(exported.out_tree),
            "leaves": [{"shape": _shape(a.shape), "dtype": str(a.dtype)} for a in exported.out_avals],
        },
        "platforms": list(exported.platforms),
        "jax_version": jax.__version__,
        "scenic_eqx_version": __version__,
    }
    with open(_description_path(path), "w") as f:
        json.dump(description, f, indent=2)
    return path


def _read_description(path: str) -> dict:
    description_path = _description_path(path)
    if not os.path.isfile(path) or not os.path.isfile(description_path):
        raise FileNotFoundError(
            f"`path` must name a model written by `export_model`: the artifact and its description "
            f"{description_path!r} beside it. Received: {path!r}, "
            f"{'present' if os.path.isfile(path) else 'missing'}, with its description "
            f"{'present' if os.path.isfile(description_path) else 'missing'}."
        )
    try:
        with open(description_path) as f:
            description = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"The description {description_path!r} of `path` is damaged (not JSON: {error}). "
            f"Received: {path!r}. Export the model again."
        ) from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        found = description.get("format") if isinstance(description, dict) else description
        raise ValueError(
            f"The description {description_path!r} of `path` must be of format {FORMAT!r}. "
            f"Received: {path!r}, described as {found!r}."
        )
    return description


def _check_batch(batch, in_aval) -> None:
    """Raises a ValueError unless `batch` has the exported input's shape and dtype."""
    shape = np.shape(batch)
    expected = _shape(in_aval.shape)
    dtype = jax.dtypes.canonicalize_dtype(np.result_type(batch))
    fits = len(shape) == len(expected) and all(
        isinstance(e, str) or e == n for e, n in zip(expected, shape, strict=True)
    )
    if not fits or dtype != in_aval.dtype:
        batch_axis = " (any batch size b)" if any(isinstance(e, str) for e in expected) else ""
        raise ValueError(
            f"`batch` must have shape ({', '.join(map(str, expected))}){batch_axis} and dtype "
            f"{in_aval.dtype}, as the model was exported. Received: shape {shape}, dtype {dtype}."
        )


def load_exported(path: str) -> Callable[[Array], PyTree[Array]]:
    """The model `export_model` wrote to `path`, as a function of a batch of inputs.

    Needs jax and numpy only: neither the model's code nor scenic_eqx's is run.

    Arguments:
        path: the artifact; its description `PATH.json` must be beside it.

    Returns:
        `call(batch) -> outputs`: `batch` of the exported shape and dtype (any batch size
        if it was exported with `batch_size=None`), outputs with a leading batch axis.
        Calling it with a batch of another shape or dtype raises a ValueError.

    Raises:
        FileNotFoundError: the artifact or its description is missing.
        ValueError: the artifact is damaged or truncated (its sha256 differs from the
            recorded one), or the description is not one `export_model` writes.
    """
    path = os.fspath(path)
    description = _read_description(path)
    with open(path, "rb") as f:
        serialized = f.read()
    digest = hashlib.sha256(serialized).hexdigest()
    if digest != description.get("sha256"):
        raise ValueError(
            f"`path` is damaged: its sha256 differs from the one its description recorded at export "
            f"({description.get('sha256')!r}, {description.get('num_bytes')} bytes). Received: {path!r}, "
            f"sha256 {digest!r}, {len(serialized)} bytes. Export the model again."
        )
    exported = jax.export.deserialize(bytearray(serialized))

    def call(batch):
        _check_batch(batch, exported.in_avals[0])
        return exported.call(batch)

    call.__doc__ = f"The model exported to {path!r}: outputs of a batch of inputs."
    return call
