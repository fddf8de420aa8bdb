"""Training speed over log windows: examples/s, per device, and model FLOPs utilisation."""

import time

from ._peak_flops import model_flops_utilization


class Throughput:
    """Times the training steps between two log points, leaving out pauses.

    A window ends at a log point, after the host has read the step's metric sums back
    from the device: that read waits for every dispatched step, so the window's time is
    the devices' time, not the time to enqueue work.

    Arguments:
        examples_per_step: the global batch size.
        num_devices: devices the step runs on.
        flops_per_step: model FLOPs of one training step, or `None` when unknown.
        peak_flops_per_device: the chip's peak FLOP/s, or `None` when unknown (no MFU).
    """

    def __init__(
        self,
        examples_per_step: int,
        num_devices: int,
        flops_per_step: float | None = None,
        peak_flops_per_device: float | None = None,
    ):
        self.examples_per_step = examples_per_step
        self.num_devices = num_devices
        self.flops_per_step = flops_per_step
        self.peak_flops_per_device = peak_flops_per_device
        self._start = time.perf_counter()
        self._steps = 0
        self._paused_at: float | None = None

    def add_steps(self, steps: int) -> None:
        self._steps += steps

    def exclude(self, seconds: float) -> None:
        """Leaves `seconds` already spent (compiling) out of the window."""
        self._start += seconds

    def pause(self) -> None:
        """Stops the clock (evaluation and checkpoints are not training time)."""
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._start += time.perf_counter() - self._paused_at
            self._paused_at = None

    def record(self) -> dict[str, float]:
        """The window's figures; starts the next window. Call after a device sync."""
        seconds = time.perf_counter() - self._start
        record = {}
        if self._steps and seconds > 0:
            examples_per_sec = self._steps * self.examples_per_step / seconds
            record["examples_per_sec"] = examples_per_sec
            record["examples_per_sec_per_device"] = examples_per_sec / self.num_devices
            if self.flops_per_step is not None and self.peak_flops_per_device:
                record["mfu"] = model_flops_utilization(
                    self.flops_per_step, seconds / self._steps, self.num_devices,
                    self.peak_flops_per_device,
                )  # fmt: skip
        self._start, self._steps = time.perf_counter(), 0
        return record
