"""Verified checkpoints of a training run with orbax: save every few steps, keep the last few,
restore only what was saved intact."""

import os
import re
import warnings

import jax
import numpy as np
from jaxtyping import PyTree

from ._checksum import array_checksums
from ._manifest import (
    CorruptCheckpointError,
    check_structure,
    fill,
    first_mismatch,
    make_manifest,
    parse_manifest,
    raw_leaves,
)

_MANIFEST = "manifest"  # the orbax item holding the manifest (a JSON file)


class CheckpointSaveError(RuntimeError):
    """A checkpoint that could not be written (a full disk, a lost file system)."""


def _all_processes_agree(ok: bool) -> bool:
    """Whether `ok` holds on every process (each calls this together)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def _sync_processes(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _root(error: BaseException) -> BaseException:
    """The exception at the bottom of `error`'s `raise ... from` chain."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _cause(error: BaseException | None) -> str:
    """A one-line account of what went wrong underneath `error` (tensorstore's JSON spec dropped)."""
    if error is None:
        return "the step directory is missing after the save"
    root = _root(error)
    text = " ".join(str(root).split(" [tensorstore_spec=")[0].split())
    text = text if len(text) <= 400 else text[:400] + "..."
    return f"{type(root).__name__}: {text}"


# Tensorstore names the array it failed to read by its index in the saved list and the
# item's directory: `Error reading "2/0.0" in OCDBT database at local file ".../train_state/"`.
_UNREADABLE = re.compile(r'Error reading "(\d+)/[^"]*" in OCDBT database at [^"]*"([^"]*)"')


def _unreadable(error: BaseException, manifest: dict) -> str:
    """Which array (or file) could not be read, and why."""
    match = _UNREADABLE.search(str(_root(error)))
    if match is not None:
        index, item = int(match.group(1)), os.path.basename(match.group(2).rstrip("/"))
        entries = manifest["items"].get(item, [])
        if index < len(entries):
            return f"the data of `{item}{entries[index]['path']}` is unreadable ({_cause(error)})"
    return f"its files are unreadable ({_cause(error)})"


class Checkpointer:
    """Saves and restores named pytrees of arrays under `directory`, by step number, verified.

    A checkpoint holds the arrays of each named pytree, not its structure: `restore`
    takes pytrees of the same structure (freshly initialised ones) and fills in their
    arrays, with their shardings (a checkpoint saved sharded one way restores sharded
    another, or on another number of devices). Typed PRNG keys are stored as their raw
    key data. `fit` saves `train_state` (a `TrainState`) and `metric_sums`.

    Every checkpoint carries a manifest (an orbax JSON item, committed atomically with
    the arrays): the tree path, shape, dtype and a sharding-independent checksum of each
    array. A step directory without its manifest is not complete and is never restored.
    `restore` checks the structure against the pytrees to restore into (a checkpoint of
    another model, optimizer or dtype raises `ValueError` naming the first differing
    path), then the checksum of every restored array (damage raises
    `CorruptCheckpointError` naming the step and the array or file);
    `restore_latest_intact` skips damaged checkpoints for the newest intact one. Arrays
    are read by tensorstore as raw numbers and the manifest is JSON: nothing in a
    checkpoint is unpickled or executed.

    A save that fails (a full disk) raises `CheckpointSaveError` naming the step, at that
    `save` or, as saves are asynchronous, at the next `check_for_errors`, `save` or
    `wait_until_finished` at the latest. It stops training rather than warn: a run that
    goes on without being able to checkpoint loses all its progress at the next crash.
    The checkpoints before it are kept: old ones are deleted only after a newer one is
    complete.

    Arguments:
        directory: where the step folders go; created if missing.
        max_to_keep: how many of the latest complete checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3):
        if max_to_keep < 1:
            raise ValueError(f"`max_to_keep` (={max_to_keep}) must be at least 1.")
        from etils import epath  # orbax's path library; orbax takes ~0.5 s to import

        self.directory = epath.Path(os.path.abspath(directory))
        self.max_to_keep = max_to_keep
        self._manager = self._open()
        self._pending: int | None = None

    def _open(self):
        import orbax.checkpoint as ocp

        # Orbax keeps every step: this class deletes old ones itself, once a newer one
        # is complete (orbax would delete them as soon as the newer save starts).
        options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True)
        return ocp.CheckpointManager(self.directory, options=options)

    def _reopen(self) -> None:
        """A fresh orbax manager after a failed save (the old one re-raises its error at
        every later call, so it could never save again)."""
        try:
            self._manager.close()
        except Exception:  # noqa: BLE001 -- the failure was already reported
            pass
        self._manager = self._open()

    def _where(self, step: int) -> str:
        return f"Checkpoint {step} in {self.directory}"

    def _manifest_path(self, step: int):
        return self.directory / str(step) / _MANIFEST / "metadata"

    def _is_complete(self, step: int) -> bool:
        return self._manifest_path(step).exists()

    def all_steps(self) -> list[int]:
        """Steps of the kept complete checkpoints (those with a manifest), oldest first."""
        return sorted(s for s in self._manager.all_steps() if self._is_complete(s))

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or `None` if there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, **items: PyTree) -> None:
        """Starts writing the arrays of each named pytree, and their manifest, as checkpoint `step`.

        Waits for the previous save first (raising `CheckpointSaveError` if it failed),
        computes the checksums (a short computation on the devices, then a copy of the
        arrays to the host) and writes in the background.
        """
        if _MANIFEST in items:
            raise ValueError(
                f"`{_MANIFEST}` is reserved for the checkpoint's manifest. Received: {sorted(items)}."
            )
        import orbax.checkpoint as ocp

        self._finish_pending()
        raw = {name: raw_leaves(tree) for name, tree in items.items()}
        args = {name: ocp.args.StandardSave([x for _, x in leaves]) for name, leaves in raw.items()}
        args[_MANIFEST] = ocp.args.JsonSave(make_manifest(step, raw))
        try:
            # `force`: a step older than the latest is written too (orbax would skip it
            # silently), e.g. after falling back past a damaged checkpoint.
            self._manager.save(step, args=ocp.args.Composite(**args), force=True)
        except Exception as error:
            self._reopen()
            raise self._save_error(step, error) from error
        self._pending = step

    def _save_error(self, step: int | None, error: BaseException | None) -> CheckpointSaveError:
        latest = self.latest_step()
        kept = (
            "there is no earlier checkpoint" if latest is None
            else f"checkpoint {latest} is intact, and a restarted run resumes from it"
        )  # fmt: skip
        which = "A checkpoint" if step is None else f"Checkpoint {step}"
        return CheckpointSaveError(
            f"{which} could not be written to {self.directory}: {_cause(error)}. Training stops here; {kept}."
        )

    def check_for_errors(self) -> None:
        """Raises `CheckpointSaveError` if the save in flight has failed; never waits for it.

        Cheap enough for every step boundary. With several processes it is a small
        collective (every process calls it together, as `save`).
        """
        if self._pending is not None and _all_processes_agree(not self._manager.is_saving_in_progress()):
            self._finish_pending()

    def _finish_pending(self) -> None:
        """Waits for the save in flight; raises if it failed, else deletes the oldest checkpoints."""
        step, error = self._pending, None
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as e:  # noqa: BLE001 -- any failure of the write is reported below
            error = e
        self._pending = None
        if step is None and error is None:
            return
        if step is None or not _all_processes_agree(error is None and self._is_complete(step)):
            self._reopen()
            raise self._save_error(step, error) from error
        complete = self.all_steps()
        for old in complete[: max(0, len(complete) - self.max_to_keep)]:
            self._manager.delete(old)

    def restore(self, step: int | None = None, **likes: PyTree) -> dict[str, PyTree]:
        """The named pytrees of checkpoint `step` (default: the latest complete one), each
        shaped like its `like`, after checking them against the checkpoint's manifest.

        Any subset of the saved names may be restored.

        Raises:
            FileNotFoundError: there is no such checkpoint.
            ValueError: the checkpoint holds other paths, shapes or dtypes than `likes`.
            CorruptCheckpointError: the checkpoint is incomplete or damaged.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"There is no complete checkpoint to restore in {self.directory}.")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"There is no checkpoint {step} in {self.directory}; the complete ones are "
                f"{self.all_steps()}. Received: step={step}."
            )
        import orbax.checkpoint as ocp

        where = self._where(step)
        manifest = self._read_manifest(step)
        raw = {name: raw_leaves(like) for name, like in likes.items()}
        for name, leaves in raw.items():
            check_structure(manifest, name, leaves, where)
        abstract = {
            name: ocp.args.StandardRestore(
                [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for _, x in leaves]
            )
            for name, leaves in raw.items()
        }
        restored, error = None, None
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**abstract))
        except Exception as e:  # noqa: BLE001 -- the storage layer's errors differ per kind of damage
            error = e
        if not _all_processes_agree(error is None):
            cause = "another process could not read it" if error is None else _unreadable(error, manifest)
            raise CorruptCheckpointError(f"{where} is damaged: {cause}.") from error
        for name in likes:
            bad = first_mismatch(manifest, name, array_checksums(restored[name]))
            if bad is not None:
                raise CorruptCheckpointError(
                    f"{where} is damaged: the data of `{name}{bad}` read back does not match its "
                    f"checksum in the manifest."
                )
        return {name: fill(like, restored[name]) for name, like in likes.items()}

    def _read_manifest(self, step: int) -> dict:
        where = self._where(step)
        path = self._manifest_path(step)
        try:
            text = path.read_bytes()
        except FileNotFoundError as error:
            raise CorruptCheckpointError(
                f"{where} has no manifest ({path}): its save did not complete (or it was written "
                f"before checkpoints had manifests)."
            ) from error
        except OSError as error:
            raise CorruptCheckpointError(f"{where}: its manifest is unreadable ({error}).") from error
        return parse_manifest(text, step, where)

    def restore_latest_intact(self, **likes: PyTree) -> tuple[int, dict[str, PyTree]] | tuple[None, None]:
        """The newest checkpoint that restores intact, skipping damaged ones.

        Walks the checkpoints newest first. A damaged or incomplete one is moved aside
        to `<step>.corrupt` (kept for inspection, never deleted; orbax ignores it and the
        run can save that step again) with a warning naming the step and the array or
        file that failed. A checkpoint of another model, optimizer or dtype raises
        `ValueError` (every older one would mismatch too).

        Arguments:
            **likes: the pytrees to restore into, as in `restore`.

        Returns:
            `(step, restored)`, or `(None, None)` when no checkpoint is intact.
        """
        self._finish_pending()
        self._manager.reload()
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                return step, self.restore(step, **likes)
            except CorruptCheckpointError as error:
                moved = self._move_aside(step)
                warnings.warn(
                    f"{error} Skipping it for an older checkpoint; it was moved to {moved}.",
                    stacklevel=2,
                )
        return None, None

    def _move_aside(self, step: int):
        """Renames checkpoint `step` to `<step>.corrupt` (`.corrupt.1`, ... if taken)."""
        source = self.directory / str(step)
        target, n = self.directory / f"{step}.corrupt", 0
        while target.exists():
            n += 1
            target = self.directory / f"{step}.corrupt.{n}"
        # Every process has chosen the same name before the first one renames.
        _sync_processes(f"scenic_eqx_checkpoint_move_aside_{step}")
        if jax.process_index() == 0:
            source.rename(target)
        _sync_processes(f"scenic_eqx_checkpoint_moved_aside_{step}")
        self._manager.reload()
        return target

    def wait_until_finished(self) -> None:
        """Blocks until every started save is on disk; raises `CheckpointSaveError` if one failed."""
        self._finish_pending()

    def close(self) -> None:
        """Waits for the save in flight (raising if it failed) and releases orbax's resources."""
        try:
            self._finish_pending()
        finally:
            self._manager.close()
