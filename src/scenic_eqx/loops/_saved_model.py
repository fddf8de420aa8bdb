"""A trained model as a TensorFlow SavedModel, through `jax.experimental.jax2tf`.

The SavedModel holds the model's StableHLO program (run by TensorFlow's `XlaCallModule`
op) and its parameters as TensorFlow variables. TensorFlow must be able to read the
StableHLO version that JAX writes: with a TensorFlow older than the JAX it is paired
with, a program using an operation TensorFlow does not know yet cannot run (with
JAX 0.10 and TensorFlow 2.21, the exact GELU's `erf`, which JAX writes as a composite
operation). `export_saved_model` runs the SavedModel once before it hands it over, so
such a model is an error at export, never an artifact that fails where it is served.
"""

import os
import shutil
import tempfile
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._extras import require
from ._export import batched_inference, check_export_arguments, check_model_state

SIGNATURE_INPUT = "inputs"


def _split_parameters(model: eqx.Module, model_state: eqx.nn.State | None):
    """The arrays of `(model, model_state)` as host arrays, and a function rebuilding the
    inference function from arrays of the same shapes."""
    arrays, static = eqx.partition((model, model_state), eqx.is_array)
    leaves, treedef = jax.tree.flatten(jax.device_get(arrays))

    def function(parameters, inputs):
        rebuilt_model, rebuilt_state = eqx.combine(jax.tree.unflatten(treedef, parameters), static)
        return batched_inference(rebuilt_model, rebuilt_state)(inputs)

    return [np.asarray(x) for x in leaves], function


def export_saved_model(
    model: eqx.Module,
    directory: str,
    *,
    input_shape: Sequence[int],
    input_dtype=jnp.float32,
    model_state: eqx.nn.State | None = None,
    batch_size: int | None = None,
    platforms: Sequence[str] | None = None,
) -> str:
    """Exports `model` as a TensorFlow SavedModel (needs TensorFlow: the `[data]` extra).

    The model runs as `export_model` runs it (inference mode, batched); its parameters
    are the SavedModel's variables. Load it with `tf.saved_model.load(directory)` and
    call `.serve(batch)`, or through its `"serving_default"` signature (input
    `"inputs"`). A SavedModel exported for `"cpu"` is run once on a batch of zeros
    before it is handed over (see the module docstring for why).

    Arguments:
        model: a one-example model, `model(x, *, key)` or, with `model_state`,
            `model(x, state, *, key) -> (outputs, state)`.
        directory: where to write the SavedModel; it must not exist yet.
        input_shape: the shape of one example, without the batch axis.
        input_dtype: the dtype of the inputs.
        model_state: the model's `eqx.nn.State`; required for a model that has one.
        batch_size: the batch size the SavedModel accepts; None: any.
        platforms: where it may run, from `"cpu"`, `"cuda"`, `"rocm"`, `"tpu"`; None:
            this machine's default backend.

    Returns:
        `directory`.

    Raises:
        ImportError: TensorFlow is not installed.
        ValueError: a malformed argument, or an existing `directory`.
        RuntimeError: TensorFlow cannot run the exported program (nothing is written).
    """
    tf = require("tensorflow", "data", "scenic_eqx.loops.export_saved_model")
    from jax.experimental import jax2tf

    input_shape, dtype, platforms = check_export_arguments(input_shape, input_dtype, batch_size, platforms)
    directory = os.fspath(directory)
    if os.path.exists(directory):
        raise ValueError(f"`directory` must not exist yet. Received: {directory!r}, which exists.")
    check_model_state(model, model_state)
    parameters, function = _split_parameters(model, model_state)
    converted = jax2tf.convert(
        function,
        polymorphic_shapes=[None, "(b, ...)" if batch_size is None else None],
        native_serialization_platforms=platforms,
        with_gradient=False,
    )
    module = tf.Module()
    module.parameters = [tf.Variable(x, trainable=False) for x in parameters]
    module.serve = tf.function(
        lambda inputs: converted(module.parameters, inputs),
        input_signature=[tf.TensorSpec((batch_size, *input_shape), tf.as_dtype(dtype), name=SIGNATURE_INPUT)],
        autograph=False,
    )
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".saved_model-", dir=parent)
    try:
        tf.saved_model.save(module, staging, signatures=module.serve)
        if "cpu" in platforms:
            _run_once(tf, staging, (batch_size or 1, *input_shape), dtype)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _run_once(tf, directory: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Runs the SavedModel in `directory` on zeros on the CPU; a RuntimeError if TF cannot."""
    try:
        with tf.device("/CPU:0"):
            loaded = tf.saved_model.load(directory)  # held: `serve` reads its variables
            loaded.serve(tf.zeros(shape, tf.as_dtype(dtype)))
    except tf.errors.OpError as error:
        # The message's first line is generic ("Graph execution error:"); the cause is on
        # the first line that XLA marks "error: ".
        causes = [line.split("error: ", 1)[1] for line in error.message.splitlines() if "error: " in line]
        raise RuntimeError(
            "TensorFlow cannot run the exported model, so no SavedModel was written. Its "
            "`XlaCallModule` op must read the StableHLO that this JAX writes: TensorFlow "
            f"{tf.__version__} with JAX {jax.__version__} may lack an operation the model "
            "uses (e.g. the exact GELU's `erf`; a ViT with `gelu_approximate=True` avoids it). "
            "`loops.export_model` (jax.export) has no such limit. TensorFlow said: "
            f"{causes[0] if causes else error.message.strip()[:500]}"
        ) from None
