"""How long JAX spends tracing, lowering and compiling inside a block of code."""

import contextlib
from collections.abc import Iterator

import jax

# JAX reports the duration of each stage of a `jit` compilation under these names.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileTime:
    """Seconds spent compiling (trace, lowering to MLIR, XLA compilation) so far."""

    seconds: float = 0.0


@contextlib.contextmanager
def compile_timer() -> Iterator[CompileTime]:
    """Sums the compilation time of every `jit` compiled inside the block.

    Unlike timing a first call, it leaves out the run itself; unlike compiling ahead
    of time, it lets the compiled step keep `jax.jit`'s C++ dispatch path.
    """
    total = CompileTime()

    def listen(event: str, seconds: float, **_) -> None:
        if event in _COMPILE_EVENTS:
            total.seconds += seconds

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield total
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
