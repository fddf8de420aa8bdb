"""Peak FLOP/s of an accelerator, and model FLOPs utilisation (MFU) against it."""

import math
import numbers
import re
from typing import Protocol, runtime_checkable

import jax


@runtime_checkable
class _HasDeviceKind(Protocol):
    """A `jax.Device`, or anything else with its `device_kind` string."""

    device_kind: str


# Dense (not sparse) bfloat16 matrix-unit peaks, in FLOP/s per JAX device, matched in
# order against the lower-cased `device_kind`. NVIDIA's spec sheets give the
# bfloat16 Tensor Core figure "with sparsity"; the dense figure is half of it. Where a
# figure cannot be told apart from the name alone (a variant not listed), the lookup
# gives `None` rather than a wrong peak.
_GPU_PEAKS: tuple[tuple[str, float], ...] = (
    # NVIDIA H100 datasheet: BF16 Tensor Core 1,979 TFLOPS (SXM), 1,513 (PCIe), 1,671
    # (NVL), with sparsity. The SXM part reports itself as "NVIDIA H100 80GB HBM3".
    (r"\bh100\b.*\bpcie\b", 756.5e12),
    (r"\bh100\b.*\bnvl\b", 835.5e12),
    (r"\bh100\b", 989.5e12),
    # NVIDIA H200 datasheet: BF16 Tensor Core 1,979 TFLOPS (SXM), 1,671 (NVL), with
    # sparsity; GH200 ("NVIDIA GH200 ...") has the same Hopper GPU at the SXM figure.
    (r"h200\b.*\bnvl\b", 835.5e12),
    (r"h200\b", 989.5e12),
    # NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS dense (624 with sparsity),
    # for the SXM4 and PCIe parts alike.
    (r"\ba100\b", 312e12),
    # NVIDIA L4 datasheet: BF16 Tensor Core 242 TFLOPS with sparsity.
    (r"\bl4\b", 121e12),
    # NVIDIA V100 datasheet (no bfloat16: the FP16 Tensor Core figure): 125 TFLOPS
    # (SXM2/SXM3), 112 (PCIe), 130 (V100S PCIe).
    (r"\bv100s\b", 130e12),
    (r"\bv100-pcie\b", 112e12),
    (r"\bv100-sxm", 125e12),
)

# Google Cloud TPU system-architecture pages, bf16 peak per chip: v2 45 TFLOPS, v3
# 123, v4 275, v5e 197, v5p 459, v6e 918. On v2 and v3 each of a chip's two
# TensorCores is its own JAX device (half the chip's peak); v4 and v5p join both cores
# of a chip into one device ("megacore"); v5e and v6e chips have one core.
_TPU_PEAKS: dict[str, float] = {
    "tpu v2": 45e12 / 2,
    "tpu v3": 123e12 / 2,
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5": 459e12,
    "tpu v5p": 459e12,
    "tpu v6 lite": 918e12,
    "tpu v6e": 918e12,
}


def peak_flops_per_device(device: _HasDeviceKind | None = None) -> float | None:
    """The dense bfloat16 peak FLOP/s of one device, from its `device_kind`.

    Known: NVIDIA H100 (SXM, PCIe and NVL differ), H200 (and NVL), A100, L4, V100 (its
    FP16 figure; it has no bfloat16), and TPU v2, v3, v4, v5e ("TPU v5 lite"), v5p
    ("TPU v5") and v6e ("TPU v6 lite"). Figures are the vendors' spec-sheet peaks for
    dense matrix math, not the sparse ones; for TPU v2 and v3 a device is one
    TensorCore, half a chip.

    Arguments:
        device: a `jax.Device` (anything with a `device_kind` string); by default the
            first of `jax.devices()`.

    Returns:
        FLOP/s, or `None` for a chip not in the table (a CPU, for one).
    """
    device = jax.devices()[0] if device is None else device
    kind = " ".join(str(device.device_kind).lower().split())
    if kind in _TPU_PEAKS:
        return _TPU_PEAKS[kind]
    if kind.startswith("tpu"):
        return None  # e.g. "TPU v4 lite": not an exact match, so unknown.
    for pattern, peak in _GPU_PEAKS:
        if re.search(pattern, kind):
            return peak
    return None


def model_flops_utilization(
    flops_per_step: float | int,
    seconds_per_step: float | int,
    num_devices: int,
    peak_flops_per_device: float | int | None,
) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the devices' peak.

    `flops_per_step / seconds_per_step / (num_devices * peak_flops_per_device)`, as
    defined by Chowdhery et al. 2022 ("PaLM", Appendix B). Model FLOPs are those the
    model needs (e.g. `3 * batch_size * nn.forward_flops(model, input_shape)`), not
    those the hardware runs: recomputation under rematerialisation is not counted, so
    it lowers MFU.

    Arguments:
        flops_per_step: model FLOPs of one training step over all devices, `>= 0`.
        seconds_per_step: wall time of one step, `> 0`.
        num_devices: devices the step runs on, a positive int.
        peak_flops_per_device: peak FLOP/s of one device (`peak_flops_per_device()`),
            `> 0`; `None` (an unknown chip) is an error naming the fix.

    Returns:
        The utilisation, a fraction (1.0 is the peak).
    """
    _check_positive(flops_per_step, "flops_per_step", allow_zero=True)
    _check_positive(seconds_per_step, "seconds_per_step")
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"`num_devices` must be a positive int; Received: {num_devices!r}")
    if peak_flops_per_device is None:
        raise ValueError(
            "`peak_flops_per_device` must be a positive number; Received: None (the chip "
            "is not in `peak_flops_per_device`'s table: pass its peak explicitly)"
        )
    _check_positive(peak_flops_per_device, "peak_flops_per_device")
    return flops_per_step / seconds_per_step / (num_devices * peak_flops_per_device)


def _check_positive(value: float | int, name: str, allow_zero: bool = False) -> None:
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"`{name}` must be {bound}; Received: {value!r}")
