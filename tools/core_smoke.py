"""Checks that the core install (`pip install scenic-eqx`, no extras) trains a model.

Builds a tiny `nn.ViT`, trains it with `loops.fit` on `data.from_arrays` of random
images for a few steps with a workdir (checkpoints and `metrics.jsonl` included),
checks that the loss is finite, and resumes the run from its checkpoint. Then checks that what needs an extra says which one:
without tensorboardX, `fit` logs once that TensorBoard events are off, naming
`[logging]`; without TensorFlow, `data.get_dataset("digits", ...)` raises an
ImportError naming `[data]`.

Run by `tools/check_core_install.sh` in a fresh virtualenv; it also passes in a full
install. Exits non-zero on any failure.
"""

import importlib.util
import logging
import math
import os
import tempfile

import jax
import numpy as np
import optax

import scenic_eqx
from scenic_eqx import data, loops, nn, tasks

NUM_STEPS = 4


def train_tiny_vit(workdir: str, num_steps: int) -> tuple[loops.TrainState, list[dict]]:
    """`loops.fit` of a 1-layer ViT on 8x8 random images: the final state and the history."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=32)
    dataset = data.from_arrays((images, labels), (images[:8], labels[:8]), batch_size=8, num_classes=4)
    model = nn.ViT(
        num_classes=4, patch_size=4, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32,
        image_size=8, key=jax.random.key(0),
    )  # fmt: skip
    return loops.fit(
        model, tasks.ClassificationTask(), dataset.train_iter, optimizer=optax.adam(1e-3),
        num_steps=num_steps, key=jax.random.key(1), eval_batches=dataset.valid_iter,
        eval_every=NUM_STEPS, log_every=2, workdir=workdir, progress=False,
    )  # fmt: skip


class _Notices(logging.Handler):
    """Keeps the messages of the `scenic_eqx` logger."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_training() -> None:
    notices = _Notices()
    logging.getLogger("scenic_eqx").addHandler(notices)
    with tempfile.TemporaryDirectory() as workdir:
        _, history = train_tiny_vit(workdir, NUM_STEPS)
        losses = [record["loss"] for record in history if "loss" in record]
        if not losses or not all(math.isfinite(loss) for loss in losses):
            raise SystemExit(f"core smoke: the training losses are not all finite: {losses}")
        if not os.path.isfile(os.path.join(workdir, "metrics.jsonl")):
            raise SystemExit("core smoke: `loops.fit` wrote no metrics.jsonl in the workdir")
        # Two steps more on the same workdir: restored from the orbax checkpoint.
        resumed, _ = train_tiny_vit(workdir, NUM_STEPS + 2)
        if int(resumed.step) != NUM_STEPS + 2:
            raise SystemExit(f"core smoke: the resumed run ended at step {int(resumed.step)}")
    if importlib.util.find_spec("tensorboardX") is None:
        # Without the [logging] extra, `fit` runs and says once that TensorBoard is off.
        named = [m for m in notices.messages if "TensorBoard" in m and "scenic-eqx[logging]" in m]
        if len(named) != 1:
            raise SystemExit(f"core smoke: expected one notice naming [logging]; got {notices.messages}")
        print(f"core smoke: loops.fit says: {named[0]}")
    print(
        f"core smoke: trained a ViT for {NUM_STEPS} steps (losses {[round(x, 4) for x in losses]}), resumed"
    )


def check_data_extra_is_named() -> None:
    if importlib.util.find_spec("tensorflow") is not None:
        print("core smoke: TensorFlow is installed; the missing-extra error is not checked")
        return
    try:
        data.get_dataset("digits", batch_size=8)
    except ImportError as error:
        if "scenic-eqx[data]" not in str(error):
            raise SystemExit(
                f"core smoke: the ImportError does not name the [data] extra: {error}"
            ) from error
        print(f"core smoke: get_dataset('digits') says: {error}")
    else:
        raise SystemExit("core smoke: get_dataset('digits') worked without TensorFlow")


def main() -> None:
    print(f"core smoke: scenic_eqx {scenic_eqx.__version__}, jax {jax.__version__}, numpy {np.__version__}")
    check_training()
    check_data_extra_is_named()
    print("core smoke: OK")


if __name__ == "__main__":
    main()
