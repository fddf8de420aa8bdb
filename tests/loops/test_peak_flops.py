"""Peak FLOP/s by device kind, and MFU arithmetic."""

import math
import types

import jax
import pytest

from scenic_eqx.loops._peak_flops import model_flops_utilization, peak_flops_per_device


def _device(kind: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(device_kind=kind)


@pytest.mark.parametrize(
    "kind, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.5e12),  # the SXM part's name
        ("NVIDIA H100 PCIe", 756.5e12),
        ("NVIDIA H100 NVL", 835.5e12),
        ("NVIDIA H200", 989.5e12),
        ("NVIDIA H200 NVL", 835.5e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA L4", 121e12),
        ("Tesla V100-SXM2-16GB", 125e12),
        ("Tesla V100-PCIE-32GB", 112e12),
        ("Tesla V100S-PCIE-32GB", 130e12),
        ("TPU v2", 22.5e12),  # one TensorCore: half of a 45 TFLOPS chip
        ("TPU v3", 61.5e12),
        ("TPU v4", 275e12),
        ("TPU v5 lite", 197e12),
        ("TPU v5e", 197e12),
        ("TPU v5", 459e12),
        ("TPU v5p", 459e12),
        ("TPU v6 lite", 918e12),
        ("TPU v6e", 918e12),
    ],
)
def test_known_chips(kind, peak):
    assert peak_flops_per_device(_device(kind)) == peak


@pytest.mark.parametrize(
    "kind",
    ["cpu", "TPU v4 lite", "TPU7x", "NVIDIA L40S", "NVIDIA A10", "NVIDIA H800",
     "NVIDIA GeForce RTX 4090", "Tesla V100-FHHL-16GB", ""],
)  # fmt: skip
def test_unknown_chips_have_no_peak(kind):
    assert peak_flops_per_device(_device(kind)) is None


def test_lookup_ignores_case_and_spacing():
    assert peak_flops_per_device(_device("  tpu   V5   LITE ")) == 197e12


def test_default_device_is_the_first():
    assert peak_flops_per_device() == peak_flops_per_device(jax.devices()[0])
    if jax.default_backend() == "cpu":
        assert peak_flops_per_device() is None


def test_mfu_arithmetic():
    # 3 TFLOP per step in 0.5 s is 6 TFLOP/s, on 2 devices of 10 TFLOP/s each: 30%.
    assert math.isclose(model_flops_utilization(3e12, 0.5, 2, 10e12), 0.3)
    # Integer FLOPs (as `nn.forward_flops` gives) are fine; no work is zero utilisation.
    assert math.isclose(model_flops_utilization(3 * 10**12, 1, 1, 3e12), 1.0)
    assert model_flops_utilization(0, 1.0, 1, 1e12) == 0.0


@pytest.mark.parametrize(
    "args, match",
    [
        ((-1.0, 1.0, 1, 1e12), r"`flops_per_step` must be a finite number >= 0; Received: -1.0"),
        ((math.inf, 1.0, 1, 1e12), r"`flops_per_step` must be a finite number >= 0; Received: inf"),
        ((1.0, 0.0, 1, 1e12), r"`seconds_per_step` must be a finite number > 0; Received: 0.0"),
        ((1.0, math.nan, 1, 1e12),
         r"`seconds_per_step` must be a finite number > 0; Received: nan"),
        ((1.0, 1.0, 0, 1e12), r"`num_devices` must be a positive int; Received: 0"),
        ((1.0, 1.0, 1, 0.0), r"`peak_flops_per_device` must be a finite number > 0; Received: 0.0"),
        ((1.0, 1.0, 1, None), r"`peak_flops_per_device` must be a positive number; Received: "
                              r"None \(the chip is not in"),
    ],
    ids=["negative_flops", "infinite_flops", "zero_seconds", "nan_seconds", "no_devices",
         "zero_peak", "unknown_peak"],
)  # fmt: skip
def test_mfu_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        model_flops_utilization(*args)
