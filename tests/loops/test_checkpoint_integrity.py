"""Verified checkpoints, on real files: damage is detected and skipped for the newest
intact checkpoint, a checkpoint of another model/optimizer/dtype is a clear error, and a
save that fails for a full disk is reported and leaves the previous checkpoint intact."""

import errno
import gc
import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import loops
from scenic_eqx.loops._checkpoint import Checkpointer, CheckpointSaveError, CorruptCheckpointError
from scenic_eqx.loops._checksum import array_checksums
from scenic_eqx.loops._manifest import raw_leaves

WORKER = os.path.join(os.path.dirname(__file__), "checkpoint_worker.py")
WEIGHT = "train_state.model.layers[1].weight"

# When one array fails to read, orbax abandons the other reads in flight; their coroutines
# raise again when garbage-collected, which Python reports as "exception ignored" noise.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_abandoned_reads():
    yield
    gc.collect()  # within the test, where the mark above applies


def make_state(step=0, width=64, optimizer=None, dtype=jnp.float32):
    """A `TrainState` of a small MLP. Its middle weight is made of random bits (finite
    floats), which the storage layer cannot compress: its bytes lie verbatim in a file."""
    model = eqx.nn.MLP(4, 3, width, depth=2, key=jax.random.key(step))
    bits = jax.random.bits(jax.random.key(100 + step), (width, width)) & jnp.uint32(0xBFFFFFFF)
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, jax.lax.bitcast_convert_type(bits, jnp.float32))
    model = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, model)
    state = loops.init_train_state(model, optimizer or optax.sgd(0.1, momentum=0.9), key=jax.random.key(7))
    return eqx.tree_at(lambda s: s.step, state, jnp.asarray(step, jnp.int32))


def arrays(tree):
    return [np.asarray(x) for _, x in raw_leaves(tree)]


def assert_same(a, b):
    for x, y in zip(arrays(a), arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)


def find_bytes(step_dir, array) -> tuple[str, int]:
    """The one file under `step_dir` holding the bytes of `array`, and where they start."""
    needle = np.asarray(array).tobytes()[:64]
    hits = [
        (path, data.find(needle))
        for path in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True)
        if os.path.isfile(path) and needle in (data := pathlib.Path(path).read_bytes())
    ]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Checkpoints 1, 2 and 3 of `make_state(step)` (each test damages a copy)."""
    directory = tmp_path_factory.mktemp("template") / "checkpoints"
    checkpointer = Checkpointer(directory)
    for step in (1, 2, 3):
        checkpointer.save(step, train_state=make_state(step), metric_sums={"loss": jnp.float32(step)})
    checkpointer.close()
    return directory


@pytest.fixture
def directory(template, tmp_path):
    shutil.copytree(template, tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def damage(path, how, offset=0):
    data = bytearray(pathlib.Path(path).read_bytes())
    if how == "flip":
        data[offset + 1000] ^= 0x04  # one byte inside the array's data
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "garbage":
        data = bytearray(np.random.default_rng(0).bytes(len(data)))
    elif how == "empty":
        data = b""
    if how == "delete":
        os.remove(path)
    else:
        with open(path, "wb") as f:
            f.write(data)


def test_each_save_writes_a_manifest_of_every_array(directory):
    manifest = json.loads((directory / "3" / "manifest" / "metadata").read_text())
    state = make_state(3)
    entries = manifest["items"]["train_state"]
    assert [e["path"] for e in entries] == [path for path, _ in raw_leaves(state)]
    assert entries[2] == {
        "path": ".model.layers[1].weight", "shape": [64, 64], "dtype": "float32",
        "checksum": array_checksums([state.model.layers[1].weight])[0],
    }  # fmt: skip
    assert entries[-1]["path"] == ".key" and entries[-1]["dtype"] == "uint32"  # raw key data
    loss = np.asarray(3, np.float32)
    assert manifest["items"]["metric_sums"] == [
        {"path": "['loss']", "shape": [], "dtype": "float32", "checksum": array_checksums([loss])[0]}
    ]
    checkpointer = Checkpointer(directory)
    assert checkpointer.all_steps() == [1, 2, 3] and checkpointer.latest_step() == 3
    restored = checkpointer.restore(train_state=make_state(0))  # a subset of the items
    assert list(restored) == ["train_state"]
    assert_same(restored["train_state"], state)


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "empty", "delete"])
def test_a_damaged_array_file_is_detected_and_skipped(directory, how):
    path, offset = find_bytes(directory / "3", make_state(3).model.layers[1].weight)
    damage(path, how, offset)
    checkpointer = Checkpointer(directory)
    cause = r"read back does not match its checksum" if how == "flip" else r"is unreadable \(ValueError: "
    message = (
        rf"Checkpoint 3 in {re.escape(str(directory))} is damaged: the data of `{re.escape(WEIGHT)}` {cause}"
    )
    with pytest.raises(CorruptCheckpointError, match=message):
        checkpointer.restore(3, train_state=make_state(0))
    with pytest.warns(UserWarning, match=message) as record:
        step, restored = checkpointer.restore_latest_intact(train_state=make_state(0))
    assert f"it was moved to {directory}/3.corrupt" in str(record[0].message)
    assert step == 2
    assert_same(restored["train_state"], make_state(2))
    # Moved aside, not deleted: kept for inspection, out of the way of a new save of step 3.
    assert sorted(os.listdir(directory)) == ["1", "2", "3.corrupt"]
    assert checkpointer.latest_step() == 2
    checkpointer.save(3, train_state=make_state(3))
    checkpointer.wait_until_finished()
    assert checkpointer.all_steps() == [1, 2, 3]


def test_a_checkpoint_without_manifest_is_incomplete(directory):
    shutil.rmtree(directory / "3" / "manifest")  # a save cut short before its manifest
    checkpointer = Checkpointer(directory)
    assert checkpointer.latest_step() == 2 and checkpointer.all_steps() == [1, 2]
    with pytest.raises(
        CorruptCheckpointError,
        match=r"Checkpoint 3 in .* has no manifest .*: its save did not complete \(or it was written before",
    ):
        checkpointer.restore(3, train_state=make_state(0))
    with pytest.warns(UserWarning, match=r"Checkpoint 3 in .* has no manifest"):
        step, restored = checkpointer.restore_latest_intact(train_state=make_state(0))
    assert step == 2
    assert_same(restored["train_state"], make_state(2))


def test_a_damaged_manifest_is_damage_not_a_mismatch(directory):
    path = directory / "3" / "manifest" / "metadata"
    path.write_text(path.read_text().replace("[64, 64]", "[64, 65]", 1))
    with pytest.raises(CorruptCheckpointError, match=r"Checkpoint 3 in .*: its manifest is damaged"):
        Checkpointer(directory).restore(3, train_state=make_state(0))


def test_fallback_picks_the_newest_intact_checkpoint(directory):
    path, offset = find_bytes(directory / "3", make_state(3).model.layers[1].weight)
    damage(path, "flip", offset)
    shutil.rmtree(directory / "2" / "manifest")
    checkpointer = Checkpointer(directory)
    with pytest.warns(UserWarning) as record:
        step, restored = checkpointer.restore_latest_intact(
            train_state=make_state(0), metric_sums={"loss": jnp.float32(0)}
        )
    assert step == 1
    assert_same(restored["train_state"], make_state(1))
    assert float(restored["metric_sums"]["loss"]) == 1.0
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert messages[0].startswith(f"Checkpoint 3 in {directory} is damaged: the data of `{WEIGHT}`")
    assert messages[1].startswith(f"Checkpoint 2 in {directory} has no manifest")
    assert sorted(os.listdir(directory)) == ["1", "2.corrupt", "3.corrupt"]
    # Nothing intact left: nothing restored, never garbage.
    shutil.rmtree(directory / "1" / "manifest")
    with pytest.warns(UserWarning, match=r"Checkpoint 1 in .* has no manifest"):
        assert checkpointer.restore_latest_intact(train_state=make_state(0)) == (None, None)
    assert sorted(os.listdir(directory)) == ["1.corrupt", "2.corrupt", "3.corrupt"]


def _mismatch(directory, like, message):
    checkpointer = Checkpointer(directory)
    with pytest.raises(ValueError, match=message):
        checkpointer.restore(3, train_state=like)
    # A configuration error, not damage: no fallback, nothing moved aside.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=message):
            checkpointer.restore_latest_intact(train_state=like)
    assert sorted(os.listdir(directory)) == ["1", "2", "3"]


def test_another_architecture_is_a_mismatch(directory):
    _mismatch(
        directory, make_state(0, width=32),
        rf"Checkpoint 3 in {re.escape(str(directory))} does not match the state to restore: at "
        r"`train_state\.model\.layers\[0\]\.weight` the checkpoint has float32\[64, 4\], the state "
        r"float32\[32, 4\]\. It was written by another model, optimizer or precision",
    )  # fmt: skip


def test_another_optimizer_is_a_mismatch(directory):
    _mismatch(
        directory, make_state(0, optimizer=optax.adam(1e-3)),
        rf"Checkpoint 3 in {re.escape(str(directory))} does not match the state to restore: "
        r"`train_state\.opt_state\[0\]\.trace\.layers\[0\]\.weight` is in the checkpoint but not in "
        r"the state to restore\. The checkpoint has 14 arrays in `train_state`, the state 21\.",
    )  # fmt: skip


def test_another_dtype_is_a_mismatch(directory):
    _mismatch(
        directory, make_state(0, dtype=jnp.bfloat16),
        r"at `train_state\.model\.layers\[0\]\.weight` the checkpoint has float32\[64, 4\], "
        r"the state bfloat16\[64, 4\]",
    )  # fmt: skip


def test_unknown_items_and_steps_are_named(directory):
    checkpointer = Checkpointer(directory)
    items = r"Checkpoint 3 in .* has no item `ema`; it holds \['metric_sums', 'train_state'\]"
    with pytest.raises(ValueError, match=items):
        checkpointer.restore(3, ema=make_state(0))
    steps = r"There is no checkpoint 4 in .*; the complete ones are \[1, 2, 3\]\. Received: step=4"
    with pytest.raises(FileNotFoundError, match=steps):
        checkpointer.restore(4, train_state=make_state(0))
    with pytest.raises(ValueError, match=r"`manifest` is reserved for the checkpoint's manifest"):
        checkpointer.save(4, manifest={"x": jnp.zeros(2)})


@pytest.fixture(params=["tmpfs", "injected"])
def full_disk(request, tmp_path, monkeypatch):
    """`(directory, fill, free)`: a checkpoint directory and functions that fill its disk and free it.

    "tmpfs": a real 512 KiB file system, filled with a file (needs root to mount).
    "injected": every file opened for writing under the directory raises ENOSPC, at
    the Python file-write boundary of orbax (its metadata and JSON files).
    """
    if request.param == "injected":
        from etils import epath

        path_type = type(epath.Path(tmp_path))
        original_open = path_type.open

        def full_open(self, mode="r", *args, **kwargs):
            if str(self).startswith(str(tmp_path)) and any(m in mode for m in "wax"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return original_open(self, mode, *args, **kwargs)

        fill = lambda: monkeypatch.setattr(path_type, "open", full_open)  # noqa: E731
        yield tmp_path / "checkpoints", fill, monkeypatch.undo
        return
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True
    ).returncode == 0  # fmt: skip
    if not mounted:
        pytest.skip("mounting a tmpfs needs root")

    def fill():
        with open(disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError, match="No space left on device"):
                while True:
                    f.write(b"\0" * 4096)

    try:
        yield disk / "checkpoints", fill, lambda: os.remove(disk / "filler")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_save_on_a_full_disk_fails_and_keeps_the_previous_checkpoint(full_disk):
    directory, fill, free = full_disk
    checkpointer = Checkpointer(directory, max_to_keep=1)
    checkpointer.save(1, train_state=make_state(1))
    checkpointer.wait_until_finished()
    fill()
    message = (
        rf"Checkpoint 2 could not be written to {re.escape(str(directory))}: .*No space left on "
        r"device.*\. Training stops here; checkpoint 1 is intact, and a restarted run resumes from it\."
    )
    # Saves are asynchronous: the failure shows at this save, or at a later step boundary
    # (`check_for_errors`, which never waits) once the background write has failed.
    with pytest.raises(CheckpointSaveError, match=message):
        checkpointer.save(2, train_state=make_state(2))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            checkpointer.check_for_errors()
            time.sleep(0.05)
    checkpointer.wait_until_finished()  # reported once
    free()
    # max_to_keep=1, yet checkpoint 1 was not deleted for the failed one.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step, restored = Checkpointer(directory).restore_latest_intact(train_state=make_state(0))
    assert step == 1
    assert_same(restored["train_state"], make_state(1))
    # With space again, the same checkpointer saves (and only then deletes checkpoint 1).
    checkpointer.save(2, train_state=make_state(2))
    checkpointer.wait_until_finished()
    assert sorted(os.listdir(directory)) == ["2"]


def test_fsdp_checkpoint_of_8_devices_restores_verified_on_4(tmp_path):
    model = make_state(1).model
    optimizer = optax.sgd(0.1, momentum=0.9)
    saved, _ = loops.init_placed_train_state(
        model, optimizer, key=jax.random.key(7), mesh=loops.data_mesh(), sharding="fsdp", fsdp_min_size=1024
    )  # fmt: skip
    weight = saved.model.layers[1].weight
    assert {s.data.shape for s in weight.addressable_shards} == {(64, 8)}
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(5, train_state=saved)
    checkpointer.wait_until_finished()
    manifest = json.loads((tmp_path / "5" / "manifest" / "metadata").read_text())["items"]["train_state"]
    four = loops.data_mesh(jax.devices()[:4])
    for sharding in ("fsdp", "replicated"):
        like, _ = loops.init_placed_train_state(
            make_state(0).model, optimizer, key=jax.random.key(0), mesh=four, sharding=sharding, fsdp_min_size=1024
        )  # fmt: skip
        restored = checkpointer.restore(train_state=like)["train_state"]
        assert_same(restored, saved)
        restored_weight = restored.model.layers[1].weight
        assert restored_weight.sharding.device_set == set(jax.devices()[:4])
        assert len({s.data.shape for s in restored_weight.addressable_shards}) == 1
        # The checksums of arrays laid out on 4 devices equal those saved from 8.
        assert array_checksums([x for _, x in raw_leaves(restored)]) == [e["checksum"] for e in manifest]


def test_two_processes_save_and_fall_back_together(tmp_path, free_port):
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(i), "2", port, str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    results = [json.loads((tmp_path / f"result_{i}.json").read_text()) for i in range(2)]
    for result in results:
        assert result["step"] == 1 and result["equal"]
        assert result["warning"].startswith(
            f"Checkpoint 2 in {tmp_path}/checkpoints is damaged: the data of `train_state.model.layers[1].weight`"
        )
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2.corrupt"]
