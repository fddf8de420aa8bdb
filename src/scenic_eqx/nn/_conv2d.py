"""2D convolutions written as matrix products where XLA:CPU's convolutions are slow.

On XLA:CPU two kinds of convolution run far below the speed of a matrix product of the
same size (measured forward and backward, batch 16, under `vmap`: `benchmarks/
conv_profile.py`, figures in benchmarks/README.md):

- 1x1 convolutions (ResNet bottlenecks and shortcuts): 1.25 to 4.6 times slower than the
  same product written as a dot.
- convolutions with a small output (at most 4x4 positions: ResNet-50's last stages on
  small images, DETR's backbone on small inputs): a 3x3, 512 -> 512 convolution with a
  2x2 output takes 285 ms forward and backward, against 5 ms as a product.

There, `convolve` gathers the input patches the kernel sees (im2col: `kh * kw` strided
slices of the padded input) and multiplies them with the kernel as one matrix product,
which computes the same sums. Elsewhere, and on every other backend (cuDNN is fast for
all of them), it is `lax.conv_general_dilated`. Parameters keep PyTorch's `(out, in, kh,
kw)` layout either way.
"""

import contextlib
from collections.abc import Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, PRNGKeyArray

# At most this many output positions (4x4), a k x k convolution is computed as a product.
_SMALL_OUTPUT = 16


def _output_size(size: int, kernel: int, stride: int, padding: tuple[int, int]) -> int:
    return (size + padding[0] + padding[1] - kernel) // stride + 1


_as_convolutions = False  # inside `as_convolutions()`


@contextlib.contextmanager
def as_convolutions() -> Iterator[None]:
    """Inside the block, `convolve` traces every convolution as XLA's convolution.

    For counting a model's FLOPs with XLA's cost analysis (`counted_forward_flops`):
    XLA fuses a cheap producer of a product's input (BatchNorm, ReLU) into each of its
    `kh * kw` windows and counts it as many times, which is not the model's arithmetic.
    """
    global _as_convolutions
    previous, _as_convolutions = _as_convolutions, True
    try:
        yield
    finally:
        _as_convolutions = previous


def as_product(kernel: tuple[int, int], output: tuple[int, int], backend: str | None = None) -> bool:
    """Whether `convolve` computes a convolution of this kernel and output size as a
    matrix product: on CPU, for a 1x1 kernel or at most 16 output positions (and not
    inside `as_convolutions()`)."""
    backend = jax.default_backend() if backend is None else backend
    small = kernel == (1, 1) or output[0] * output[1] <= _SMALL_OUTPUT
    return not _as_convolutions and backend == "cpu" and small


def convolve(
    x: ArrayLike, weight: ArrayLike, stride: tuple[int, int], padding: tuple[tuple[int, int], tuple[int, int]]
) -> Array:
    """The cross-correlation of one channels-first example `x` `[in, height, width]`
    with `weight` `[out, in, kh, kw]` (no dilation, no groups): `[out, out_height,
    out_width]`, as `lax.conv_general_dilated` computes it, or as a matrix product
    where that is faster (see `as_product`). As Equinox's convolution, it is not
    shape-checked itself: the models that call it are.
    """
    _, in_channels, kh, kw = weight.shape
    oh = _output_size(x.shape[1], kh, stride[0], padding[0])
    ow = _output_size(x.shape[2], kw, stride[1], padding[1])
    if not as_product((kh, kw), (oh, ow)):
        return jax.lax.conv_general_dilated(x[None], weight, stride, padding)[0]
    if any(any(side) for side in padding):
        x = jnp.pad(x, ((0, 0), *padding))
    windows = [
        x[:, i : i + stride[0] * (oh - 1) + 1 : stride[0], j : j + stride[1] * (ow - 1) + 1 : stride[1]]
        for i in range(kh)
        for j in range(kw)
    ]
    # [in * kh * kw, oh, ow]: the order of the kernel's flattened `(in, kh, kw)`.
    patches = windows[0] if len(windows) == 1 else jnp.stack(windows, axis=1).reshape(-1, oh, ow)
    kernel = weight.reshape(weight.shape[0], in_channels * kh * kw)
    return jax.lax.dot_general(kernel, patches, (((1,), (0,)), ((), ())))


class Conv2d(eqx.nn.Conv2d):
    """`eqx.nn.Conv2d` computed by `convolve`: a 1x1 or small-output convolution runs as
    a matrix product on CPU. The same fields, parameters and results (to float32
    rounding); dilated, grouped or non-zero-padded convolutions run as Equinox's."""

    def __call__(self, x: ArrayLike, *, key: PRNGKeyArray | None = None) -> Array:
        """Convolves one channels-first example `[in, height, width]` (as Equinox's, not
        shape-checked: see `convolve`)."""
        plain = self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "ZEROS"
        if not plain or x.ndim != 3 or isinstance(self.padding, str):
            return super().__call__(x, key=key)
        out = convolve(x, self.weight, self.stride, self.padding)
        return out + self.bias if self.use_bias else out
