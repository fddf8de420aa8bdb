"""Cost of the default shape checks: `import scenic_eqx` and a model's first jitted call.

    .venv/bin/python benchmarks/shape_check_cost.py --repeats 5
    .venv/bin/python benchmarks/shape_check_cost.py --repeats 5 --bytecode-cache /tmp/pycache

Every figure comes from a fresh Python process, run with the checks on (the default)
and off (`SCENIC_EQX_SHAPE_CHECKS=0`), alternating. `import` is the wall time of the
whole process `python -c "import scenic_eqx"`, interpreter start-up included. `first
call` is, inside a process, the time of the first call of `eqx.filter_jit(jax.vmap(vit))`
on a batch of 8 images (trace, checks, compile, run) for a small ViT (32x32x3 input,
patch 4, hidden 64, 2 layers, 2 heads, MLP 128); the second call is timed too (compiled:
no checks run). Prints the median and min-max seconds of each.

The import hook compiles the modules it instruments from their source; Python caches
that bytecode unless `PYTHONDONTWRITEBYTECODE` is set. `--bytecode-cache DIR` allows the
cache, kept under `DIR` (`PYTHONPYCACHEPREFIX`), and warms it with one import per
setting before timing; without it the environment decides.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_FIRST_CALL = """
import json, time
import equinox as eqx, jax, jax.numpy as jnp
from scenic_eqx import nn
vit = nn.ViT(num_classes=10, patch_size=4, hidden_size=64, num_layers=2, num_heads=2,
             mlp_dim=128, image_size=32, key=jax.random.key(0))
forward = eqx.filter_jit(jax.vmap(vit))
images = jnp.ones((8, 32, 32, 3))
jax.block_until_ready(images)
start = time.perf_counter()
jax.block_until_ready(forward(images))
first = time.perf_counter() - start
start = time.perf_counter()
jax.block_until_ready(forward(images + 1.0))
print(json.dumps({"first": first, "second": time.perf_counter() - start}))
"""


def _environment(checks: bool, bytecode_cache: str | None) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "SCENIC_EQX_SHAPE_CHECKS": "1" if checks else "0"}
    env.pop("JAXTYPING_DISABLE", None)
    if bytecode_cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = bytecode_cache
    return env


def _import_seconds(env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import scenic_eqx"], env=env, check=True)
    return time.perf_counter() - start


def _first_call_seconds(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bytecode-cache", default=None, metavar="DIR")
    args = parser.parse_args()
    settings = {"checks on": True, "checks off": False}
    envs = {name: _environment(on, args.bytecode_cache) for name, on in settings.items()}
    if args.bytecode_cache is not None:
        for env in envs.values():
            _import_seconds(env)
    times = {name: {"import": [], "first call": [], "second call": []} for name in settings}
    for _ in range(args.repeats):
        for name, env in envs.items():
            times[name]["import"].append(_import_seconds(env))
            calls = _first_call_seconds(env)
            times[name]["first call"].append(calls["first"])
            times[name]["second call"].append(calls["second"])
    print(f"seconds, median (min-max) of {args.repeats} fresh processes")
    for name, figures in times.items():
        print(f"{name:10s} " + "  ".join(f"{what} {_summary(v)}" for what, v in figures.items()))
    for what in ("import", "first call"):
        on, off = (statistics.median(times[name][what]) for name in settings)
        print(f"{what}: checks add {on - off:+.3f} s ({on / off:.2f}x)")


if __name__ == "__main__":
    main()
