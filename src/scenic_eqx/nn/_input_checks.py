"""Checks of a model's input at trace time: rank, dtype and the sizes the model was built for.

Shapes and dtypes are static under `jit` and `vmap`, so a wrong input is refused before
anything runs, with a message naming the argument, the axis, what the model expects and
what it received. Without these checks a 1-channel image into a 3-channel ViT is
accepted (the patch einsum broadcasts the channel axis), integer images are multiplied
by weights cast to integers, and a batch fed to a one-example model fails deep in `lax`.
"""

from collections.abc import Mapping

import jax.numpy as jnp


def check_input(
    x: object,
    axes: tuple[str, ...],
    *,
    model: str,
    sizes: Mapping[str, tuple[str, int]] | None = None,
    name: str = "x",
) -> None:
    """Raises if `x` is not a floating-point array of the given axes and sizes.

    Arguments:
        x: the input of one example (no batch axis).
        axes: the name of each axis, e.g. `("height", "width", "channels")`.
        model: the model or layer, for the message.
        sizes: `{axis: (source, size)}`: the size an axis must have, and the constructor
            argument that fixed it, e.g. `{"channels": ("`in_channels` (=3)", 3)}`.
        name: the argument's name, for the message.

    Raises:
        TypeError: `x` is not an array, or not floating-point (convert images with
            `x.astype(jnp.float32)`, scaling them as the model was trained).
        ValueError: the rank or the size of an axis differs.
    """
    layout = f"({', '.join(axes)})"
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"`{name}` (the input of {model}) must be an array of shape {layout}. Received: "
            f"{type(x).__name__}."
        )
    if len(shape) != len(axes):
        hint = ""
        if len(shape) == len(axes) + 1:
            hint = " It takes one example: batch it with `jax.vmap`."
        raise ValueError(
            f"`{name}` (the input of {model}) must have rank {len(axes)}, shape {layout}.{hint} "
            f"Received: shape {tuple(shape)}."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"`{name}` (the input of {model}) must be a floating-point array (convert it, e.g. "
            f"`x.astype(jnp.float32)`, scaled as the model expects). Received: dtype {dtype}."
        )
    for axis, (source, size) in (sizes or {}).items():
        index = axes.index(axis)
        if shape[index] != size:
            raise ValueError(
                f"`{name}` (the input of {model}) must have size {size} on its `{axis}` axis "
                f"(axis {index} of {layout}), from {source}. Received: shape {tuple(shape)}."
            )


def check_image(
    x: object,
    *,
    model: str,
    in_channels: int,
    image_size: tuple[int, ...] | None = None,
    num_frames: int | None = None,
    name: str = "x",
) -> None:
    """`check_input` for one image `(height, width, channels)`, or one clip
    `(time, height, width, channels)` when `num_frames` is given.

    Arguments:
        x: the input.
        model: the model or layer, for the message.
        in_channels: the channels the model was built for (its first weight's).
        image_size: `(height, width)` the model was built for, if fixed.
        num_frames: frames of a clip the model was built for; a clip when given.
        name: the argument's name, for the message.
    """
    axes = ("height", "width", "channels")
    sizes = {}
    if num_frames is not None:
        axes = ("time", *axes)
        size = f"`num_frames` x `image_size` (={num_frames}x{image_size[0]}x{image_size[1]})"
        sizes["time"] = (size, num_frames)
    elif image_size is not None:
        size = f"`image_size` (={image_size[0]}x{image_size[1]})"
    if image_size is not None:
        sizes.update(height=(size, image_size[0]), width=(size, image_size[1]))
    sizes["channels"] = (f"`in_channels` (={in_channels})", in_channels)
    check_input(x, axes, model=model, sizes=sizes, name=name)


def check_flat_input(x: object, *, model: str, num_values: int, name: str = "x") -> None:
    """`check_input` for a model that flattens one image of `num_values` values.

    The layout of those values is not stored, so only their number is checked: a
    1-channel image into a model built for 3 channels is refused, a transposed one not.
    """
    check_input(x, ("height", "width", "channels"), model=model, name=name)
    if x.size != num_values:
        raise ValueError(
            f"`{name}` (the input of {model}) must hold {num_values} values, the product of "
            f"the `input_shape` it was built with. Received: shape {tuple(x.shape)} "
            f"({x.size} values)."
        )
