"""`MetaData`: what a trainer needs to know about a dataset, typed and checked once.

Every dataset's `meta_data` is one: its fields are attributes (`meta_data.num_classes`)
and, as before it was typed, keys of a read-only mapping (`meta_data["num_classes"]`,
`"num_classes" in meta_data`, `{**meta_data}`). A field left at None is absent from the
mapping, as `num_classes` is for regression targets. A builder may return a plain dict:
`Dataset` turns it into a `MetaData`, its unknown keys kept in `extra`.
"""

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def _fail(name: str, expected: str, value: object) -> None:
    raise ValueError(f"`meta_data.{name}` must be {expected}. Received: {value!r}.")


def _is_count(value: object, minimum: int) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= minimum


@dataclasses.dataclass(frozen=True, eq=False)
class MetaData(Mapping[str, Any]):
    """A dataset's description. Shapes are per example, after the leading batch axis.

    Attributes:
        input_shape: `(-1, *example_shape)` of the batches' `inputs`, e.g.
            `(-1, height, width, channels)` or `(-1, time, height, width, channels)`.
        input_dtype: the numpy scalar type of `inputs` (`np.float32`).
        num_train_examples: the training split's size, over all hosts.
        num_eval_examples: the validation split's size (what `valid_iter` reads), over
            all hosts.
        dataset_name: the name `get_dataset` was called with.
        num_classes: the number of classes of class labels; None (absent) for
            regression or other targets where it means nothing.
        class_names: the name of each class index, where the dataset has them.
        label_shape: the per-example shape of `label` (`()` for a class index, `(d,)`
            for regression targets; a dict of shapes for dict labels), where recorded.
        target_is_onehot: whether `label` holds one-hot vectors rather than indices.
        valid_source: the split `valid_iter` reads: `"test"`, a validation split of
            the dataset's own, or `"train[k:]"` (held out by `valid_fraction`).
        max_boxes: detection datasets: boxes per example, padded.
        num_test_views: video datasets: views (clips x crops) per evaluated video.
        extra: a builder's own keys, readable as the fields are.
    """

    input_shape: Shape
    input_dtype: type
    num_train_examples: int
    num_eval_examples: int
    dataset_name: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    label_shape: Shape | Mapping[str, Any] | None = None
    target_is_onehot: bool = False
    valid_source: str | None = None
    max_boxes: int | None = None
    num_test_views: int | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        shape = self.input_shape
        if not (
            isinstance(shape, tuple | list)
            and shape
            and shape[0] == -1
            and all(_is_count(d, 1) for d in shape[1:])
        ):
            _fail("input_shape", "(-1, *example_shape) with positive sizes", shape)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
        try:
            object.__setattr__(self, "input_dtype", np.dtype(self.input_dtype).type)
        except TypeError:
            _fail("input_dtype", "a numpy dtype such as np.float32", self.input_dtype)
        for name in ("num_train_examples", "num_eval_examples"):
            if not _is_count(getattr(self, name), 0):
                _fail(name, "a non-negative int", getattr(self, name))
        for name in ("num_classes", "max_boxes", "num_test_views"):
            if getattr(self, name) is not None and not _is_count(getattr(self, name), 1):
                _fail(name, "a positive int or None", getattr(self, name))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if self.num_classes is not None and len(self.class_names) != self.num_classes:
                _fail("class_names", f"one name per class ({self.num_classes})", self.class_names)
        clash = set(self.extra) & set(self._field_names())
        if clash:
            _fail("extra", "keys other than the typed fields", sorted(clash))

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def of(cls, meta_data: Mapping[str, Any]) -> "MetaData":
        """`meta_data` as a `MetaData`: itself if it is one, else a mapping's keys as
        fields and its other keys in `extra`.

        Raises:
            ValueError: a required field is missing or a field's value is malformed.
        """
        if isinstance(meta_data, MetaData):
            return meta_data
        if not isinstance(meta_data, Mapping):
            raise ValueError(
                f"`meta_data` must be a `data.MetaData` or a dict. Received: a {type(meta_data).__name__}."
            )
        names = cls._field_names()
        required = [
            f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name != "extra"
        ]
        missing = [name for name in required if name not in meta_data]
        if missing:
            raise ValueError(
                f"`meta_data` must give {', '.join(required)}; it lacks {', '.join(missing)}. "
                f"Received keys: {sorted(meta_data)}."
            )
        fields = {k: v for k, v in meta_data.items() if k in names}
        extra = {k: v for k, v in meta_data.items() if k not in names}
        return cls(**fields, extra=extra)

    def replace(self, **changes: Any) -> "MetaData":
        """A copy with `changes` to fields or `extra` keys."""
        names = self._field_names()
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in names}}
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in names}, extra=extra)

    def __getitem__(self, key: str) -> Any:
        if key in self._field_names():
            value = getattr(self, key)
            if value is None:
                raise KeyError(key)
            return value
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        yield from (name for name in self._field_names() if getattr(self, name) is not None)
        yield from self.extra

    def __len__(self) -> int:
        return sum(1 for _ in self)
