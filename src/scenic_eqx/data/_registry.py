"""Datasets by name: `get_dataset("digits", batch_size=32)`.

Each entry names the function that builds the `Dataset` (one per dataset of the TFDS
catalogue, in `_catalogue.py`, `_imagenet.py`, `_pet.py` and `_coco.py`, all reading
TFDS builders the same way; others for arrays, image folders, videos and generated
data) and declares the dataset's own arguments (`image_size`, `root`, ...) in its
signature; `register` adds such a function from outside the library.
TensorFlow is imported only inside `get_dataset`, by the builders that need it.
"""

import dataclasses
import difflib
import functools
import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

from .._extras import require
from ._checks import check_positive_int, check_process, check_seed
from ._dataset import Dataset
from ._holdout import check_valid_fraction


@dataclasses.dataclass(frozen=True)
class _Builder:
    """A dataset built by `module.function`, not read from a TFDS builder by name.

    The function is called with the keyword arguments `batch_size`, `eval_batch_size`,
    `shuffle_seed`, `process_index` and `process_count` (checked by `get_dataset`) and
    those of `get_dataset`'s `**kwargs` (and `data_dir`, if given) that it declares as
    keyword parameters; it returns the `Dataset`.
    """

    module: str
    function: str
    # False for a dataset made in numpy, which works without the `[data]` extra.
    uses_tensorflow: bool = True

    def load(self) -> Callable[..., Dataset]:
        """The builder function."""
        return getattr(importlib.import_module(self.module), self.function)


# The arguments that `get_dataset` itself checks and passes to every `_Builder`.
_COMMON_ARGUMENTS = ("batch_size", "eval_batch_size", "shuffle_seed", "process_index", "process_count")

_DATASETS: dict[str, _Builder] = {
    # The TFDS catalogue, with each dataset's preprocessing and augmentation; read from
    # `data_dir` where prepared, never downloaded (`digits` is generated there from
    # scikit-learn's copy; `mnist` falls back to an offline copy).
    "digits": _Builder("scenic_eqx.data._catalogue", "digits"),
    "mnist": _Builder("scenic_eqx.data._catalogue", "mnist"),
    "fashion_mnist": _Builder("scenic_eqx.data._catalogue", "fashion_mnist"),
    "cifar10": _Builder("scenic_eqx.data._catalogue", "cifar10"),
    "cifar100": _Builder("scenic_eqx.data._catalogue", "cifar100"),
    "svhn_cropped": _Builder("scenic_eqx.data._catalogue", "svhn_cropped"),
    "imagenet2012": _Builder("scenic_eqx.data._imagenet", "imagenet2012"),
    "oxford_iiit_pet": _Builder("scenic_eqx.data._pet", "oxford_iiit_pet"),
    "coco/2017": _Builder("scenic_eqx.data._coco", "coco"),
    "arrays": _Builder("scenic_eqx.data._arrays", "arrays_dataset", uses_tensorflow=False),
    "image_folder": _Builder("scenic_eqx.data._image_folder", "image_folder_dataset"),
    "video_tfrecord": _Builder("scenic_eqx.data._video", "video_tfrecord_dataset"),
    "synthetic_segmentation": _Builder(
        "scenic_eqx.data._synthetic_segmentation", "synthetic_segmentation_dataset", uses_tensorflow=False
    ),
    "synthetic_detection": _Builder(
        "scenic_eqx.data._synthetic_detection", "synthetic_detection_dataset", uses_tensorflow=False
    ),
}


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_DATASETS)


@dataclasses.dataclass(frozen=True)
class _RegisteredBuilder(_Builder):
    """A `_Builder` given as the function itself, by `register` (`module`, `function` name it)."""

    builder: Callable[..., Dataset] | None = None

    def load(self) -> Callable[..., Dataset]:
        return self.builder


def register(name: str, builder: Callable[..., Dataset] | None = None, /, *, overwrite: bool = False):
    """Registers a dataset builder under `name`, so that configs and `get_dataset` find it.

    As a decorator, `@data.register("my_data")` on the function; as a call,
    `data.register("my_data", build_my_data)`. `get_dataset(name, ...)` calls it as the
    library's own builders are called: with the keyword arguments `batch_size`,
    `eval_batch_size`, `shuffle_seed`, `process_index` and `process_count` (checked
    first, per host) and the options given to `get_dataset` (`config.dataset`) that it
    declares as keyword-only parameters (with `data_dir`, if given); unknown options
    are errors that list them.

    Arguments:
        name: the dataset's name in `list_datasets()`.
        builder: a function returning a `Dataset` (e.g. by `data.from_arrays`);
            omitted when used as a decorator.
        overwrite: replace an entry already registered under `name` (else an error).

    Returns:
        `builder` (or, as a decorator, a function registering and returning it).

    Raises:
        ValueError: `name` is not a non-empty string or is taken, or `builder` is not
            callable or does not take the keyword arguments above.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: {name!r}.")
    if name in _DATASETS and not overwrite:
        raise ValueError(
            f"A dataset is already registered as {name!r}; pass `overwrite=True` to replace it. "
            f"Received: name={name!r}."
        )

    def add(builder: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _check_builder(name, builder)

        @functools.wraps(builder)  # `get_dataset` reads the options from the signature
        def build_checked(**kwargs: Any) -> Dataset:
            dataset = builder(**kwargs)
            if not isinstance(dataset, Dataset):
                raise TypeError(
                    f"The builder of dataset {name!r} must return a `scenic_eqx.data.Dataset` "
                    f"(e.g. from `data.from_arrays`). Received: a {type(dataset).__name__}."
                )
            return dataset

        module, function = getattr(builder, "__module__", ""), getattr(builder, "__qualname__", repr(builder))
        _DATASETS[name] = _RegisteredBuilder(module, function, uses_tensorflow=False, builder=build_checked)
        return builder

    return add if builder is None else add(builder)


def _check_builder(name: str, builder: object) -> None:
    if not callable(builder):
        raise ValueError(
            f"`builder` of dataset {name!r} must be callable: a function returning a `Dataset`. "
            f"Received: {builder!r} of type {type(builder).__name__}."
        )
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # no signature to check: `get_dataset` will call it
        return
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return
    by_keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    missing = [a for a in _COMMON_ARGUMENTS if a not in parameters or parameters[a].kind not in by_keyword]
    if missing:
        raise ValueError(
            f"`builder` of dataset {name!r} must take the keyword arguments "
            f"{', '.join(_COMMON_ARGUMENTS)} (as `get_dataset` passes them). Received: "
            f"{getattr(builder, '__name__', builder)}{inspect.signature(builder)}, without "
            f"{', '.join(missing)}."
        )


def _check_data_dir(data_dir: object) -> str | None:
    if data_dir is None:
        return None
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(
            f"`data_dir` (={data_dir!r}) must be a path (str or os.PathLike) or None. "
            f"Received: {data_dir!r} of type {type(data_dir).__name__}."
        )
    return os.fspath(data_dir)


def get_dataset(
    name: str,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    data_dir: str | None = None,
    shuffle_seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    valid_fraction: float | None = None,
    **kwargs: Any,
) -> Dataset:
    """Builds the host-local train and eval batches of the registered dataset `name`.

    Arguments:
        name: a name from `list_datasets()`.
        batch_size: training examples per batch on this host.
        eval_batch_size: evaluation examples per batch on this host; defaults to
            `batch_size`.
        data_dir: TFDS data directory; defaults to TFDS's own (`TFDS_DATA_DIR` or
            `~/tensorflow_datasets`). A local dataset such as `digits` is generated
            there on first use.
        shuffle_seed: seed of the training order; the same seed gives the same batches.
        process_index: this host's index; defaults to `jax.process_index()`.
        process_count: the number of hosts; defaults to `jax.process_count()`.
        valid_fraction: a float in (0, 1): hold out the last `round(valid_fraction *
            n)` of the `n` training examples (a fixed tail: the TFDS slices
            `train[:k]` and `train[k:]`) as the validation split, instead of the
            dataset's own (which for `digits` and most of the catalogue is the test
            split). `meta_data["valid_source"]` names what `valid_iter` reads.
            Datasets that cannot hold out part of their training split (`video_tfrecord`)
            refuse it.
        **kwargs: the dataset's own options, as its builder declares them: `arrays`
            (see `from_arrays`), `image_folder` (see `image_folder_dataset`) and
            `video_tfrecord` (see `video_tfrecord_dataset`);
            `docs/bring_your_own_data.md` shows each. The TFDS catalogue datasets
            (`digits`, `cifar10`, `imagenet2012`, `coco/2017`, ...) take `shuffle_buffer_size`,
            `cache`, `prefetch`, the splits `train_split`, `valid_split` and
            `test_split` (e.g. `"train[:98%]"`), and their own (`augment`,
            `randaugment`, `image_size`, `task`, `max_boxes`, `manual_dir`; see
            `_catalogue.py`, `_imagenet.py`, `_pet.py` and `_coco.py`).

    Returns:
        A `Dataset`. For `digits`, `valid_iter` and `test_iter` are both passes over
        its test split, which is the only held-out split, unless `valid_fraction` holds
        out part of the training split. `meta_data["valid_source"]` is the split
        `valid_iter` reads: `"test"` (then `valid_iter` is `test_iter`), a validation
        split of the dataset's own, or `"train[k:]"` when held out by `valid_fraction`.
        Its `train_iter` is a `ResumableIterator` (its position saved and restored
        without replay), except for a tf.data source that cannot be checkpointed (see
        `_tf_iterator.py`).

    Raises:
        ValueError, TypeError, FileNotFoundError: a bad argument, named in the message
            with what was expected and what was received, checked before TensorFlow
            is imported where it can be.
        ImportError: TensorFlow or TFDS is not installed (`pip install
            'scenic-eqx[data]'`), for a dataset other than `arrays`,
            `synthetic_segmentation` and `synthetic_detection`, which are made in numpy.
    """
    if not isinstance(name, str) or name not in _DATASETS:
        close = difflib.get_close_matches(str(name), _DATASETS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown dataset `name` (={name!r}).{hint} "
            f"Known datasets: {', '.join(list_datasets())}. Received: {name!r}."
        )
    # Checked before the dataset's module (and TensorFlow) is imported.
    batch_size = check_positive_int("batch_size", batch_size)
    eval_batch_size = check_positive_int(
        "eval_batch_size", batch_size if eval_batch_size is None else eval_batch_size
    )
    shuffle_seed = check_seed("shuffle_seed", shuffle_seed)
    valid_fraction = check_valid_fraction(valid_fraction)
    data_dir = _check_data_dir(data_dir)
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    process_index, process_count = check_process(process_index, process_count)
    entry = _DATASETS[name]
    if entry.uses_tensorflow:
        for module in ("tensorflow", "tensorflow_datasets"):
            require(module, "data", f"scenic_eqx.data.get_dataset({name!r})")
    build = entry.load()
    if data_dir is not None:
        kwargs = {**kwargs, "data_dir": data_dir}
    known = [
        p.name
        for p in inspect.signature(build).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in _COMMON_ARGUMENTS
    ]
    if valid_fraction is not None:
        if "valid_fraction" not in known:
            raise TypeError(
                f"Dataset {name!r} cannot hold out `valid_fraction` of its training "
                f"split; its options are: {', '.join(known)}. Received: "
                f"valid_fraction={valid_fraction!r}."
            )
        kwargs = {**kwargs, "valid_fraction": valid_fraction}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        own = [option for option in known if option not in ("data_dir", "valid_fraction")]
        raise TypeError(
            f"Unknown option(s) {', '.join(unknown)} for `get_dataset` of {name!r}; "
            f"known: {', '.join(own)}. Received: "
            f"{', '.join(f'{key}={kwargs[key]!r}' for key in unknown)}."
        )
    dataset = build(
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
        **kwargs,
    )
    return _with_valid_source(dataset)


def _with_valid_source(dataset: Dataset) -> Dataset:
    """`dataset`, its meta data saying `valid_source="test"` where its builder left it
    out because `valid_iter` is `test_iter` (no validation data of its own)."""
    if "valid_source" in dataset.meta_data or dataset.valid_iter is not dataset.test_iter:
        return dataset
    return dataclasses.replace(dataset, meta_data=dataset.meta_data.replace(valid_source="test"))
