"""`synthetic_segmentation`: random discs, squares and triangles with their exact masks.

Each image is a noisy background of one random colour with one to three shapes of
random class, size, position and colour drawn on it, upright and without overlap. The
label map gives every pixel the class of the shape whose interior holds the pixel's
centre, else background: the masks are exact, and a model must tell the shapes apart by
their form (colours carry no class information). The three shapes have the same area in
expectation, so the shape classes are balanced.

Generated in memory with numpy: no download, no TensorFlow. Example `i` of a split is a
function of `(seed, split, i)` alone, so the data are deterministic given `seed` and a
larger split extends a smaller one.
"""

import math
from typing import NamedTuple

import numpy as np

from ._checks import check_positive_int, check_process
from ._dataset import Dataset
from ._holdout import check_valid_fraction, held_out_arrays
from ._in_memory import EvalBatches, train_batches
from ._meta_data import MetaData

CLASS_NAMES = ("background", "disc", "square", "triangle")
MAX_SHAPES = 3
# Shape "radius" range as fractions of the image size: the radius of the disc of the
# same area as the shape.
MIN_RADIUS, MAX_RADIUS = 0.125, 0.25
NOISE_STD = 0.05
# Least RGB distance between a shape's colour and the background's and earlier shapes', so
# that no shape is invisible.
MIN_CONTRAST = 0.3
# Circumradius / equal-area-disc radius: a square of side r*sqrt(pi) and an equilateral
# triangle of area pi*r^2.
_CIRCUMRADIUS = {2: math.sqrt(math.pi / 2), 3: math.sqrt(4 * math.pi / (3 * math.sqrt(3)))}
_SPLITS = {"train": 0, "test": 1}
_PLACEMENT_TRIES = 10
# Upright shapes: a square's sides are axis-aligned and a triangle points up (rows grow
# downwards), so that edge orientations tell the classes apart; rotated shapes would
# need corner angles, which a small U-Net learns far more slowly.
_ANGLE = {1: 0.0, 2: math.pi / 4, 3: -math.pi / 2}
# Extent of the upright shapes above, below and to each side of their centre, in radii.
_EXTENT = {
    1: (1.0, 1.0, 1.0),
    2: (math.sqrt(math.pi) / 2,) * 3,
    3: (_CIRCUMRADIUS[3], _CIRCUMRADIUS[3] / 2, _CIRCUMRADIUS[3] * math.sqrt(3) / 2),
}


class Shape(NamedTuple):
    """One drawn shape: class index (1 disc, 2 square, 3 triangle), equal-area-disc
    radius, centre and rotation (the angle of a vertex from the x axis), in pixels and
    radians, and RGB colour in [0, 1]."""

    class_index: int
    radius: float
    center_y: float
    center_x: float
    angle: float
    colour: tuple[float, float, float]


def shape_mask(shape: Shape, image_size: int) -> np.ndarray:
    """Whether each pixel's centre is inside `shape`.

    Arguments:
        shape: the shape.
        image_size: height and width of the image.

    Returns:
        Bool `[image_size, image_size]`.
    """
    centres = np.arange(image_size) + 0.5
    y, x = centres[:, None] - shape.center_y, centres[None, :] - shape.center_x
    if shape.class_index == 1:
        return y**2 + x**2 <= shape.radius**2
    # A regular polygon: inside every edge, each a chord of the circumcircle.
    num_sides = {2: 4, 3: 3}[shape.class_index]
    vertex_angles = shape.angle + 2 * math.pi * np.arange(num_sides + 1) / num_sides
    circumradius = shape.radius * _CIRCUMRADIUS[shape.class_index]
    vy, vx = circumradius * np.sin(vertex_angles), circumradius * np.cos(vertex_angles)
    inside = np.ones((image_size, image_size), bool)
    for k in range(num_sides):
        # Vertices run counter-clockwise: the interior is left of each edge.
        cross = (vx[k + 1] - vx[k]) * (y - vy[k]) - (vy[k + 1] - vy[k]) * (x - vx[k])
        inside &= cross >= 0
    return inside


def _distinct_colour(rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    while True:
        colour = rng.uniform(size=3)
        if all(np.linalg.norm(colour - other) >= MIN_CONTRAST for other in others):
            return colour


def sample_example(
    image_size: int, seed: int, split: str, index: int
) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
    """Example `index` of `split`, drawn from its own random stream.

    Arguments:
        image_size: height and width.
        seed: the dataset seed.
        split: `"train"` or `"test"`.
        index: the example's index in its split.

    Returns:
        `(image, label, shapes)`: float32 `[image_size, image_size, 3]` in [0, 1],
        int32 `[image_size, image_size]` class map and the shapes drawn.
    """
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    background = rng.uniform(size=3)
    colours, shapes = [background], []
    image = np.broadcast_to(background, (image_size, image_size, 3)).copy()
    label = np.zeros((image_size, image_size), np.int32)
    for _ in range(rng.integers(1, MAX_SHAPES + 1)):
        # Shapes do not overlap (a hidden part would leave a shape's class ambiguous);
        # one that finds no free place is left out.
        # The class is drawn once, not per try: retrying it would favour the shapes
        # that are easier to place.
        class_index = int(rng.integers(1, len(CLASS_NAMES)))
        for _ in range(_PLACEMENT_TRIES):
            radius = image_size * rng.uniform(MIN_RADIUS, MAX_RADIUS)
            # Wholly inside the image: a clipped shape could lose what tells it apart.
            up, down, side = (radius * e for e in _EXTENT[class_index])
            center_y = rng.uniform(up, image_size - down)
            center_x = rng.uniform(side, image_size - side)
            shape = Shape(
                class_index=class_index,
                radius=float(radius),
                center_y=float(center_y),
                center_x=float(center_x),
                angle=_ANGLE[class_index],
                colour=(0.0, 0.0, 0.0),
            )
            inside = shape_mask(shape, image_size)
            if not np.any(inside & (label > 0)):
                break
        else:
            continue
        colour = _distinct_colour(rng, colours)
        shape = shape._replace(colour=tuple(float(c) for c in colour))
        image[inside] = colour
        label[inside] = shape.class_index
        colours.append(colour)
        shapes.append(shape)
    image = np.clip(image + rng.normal(scale=NOISE_STD, size=image.shape), 0.0, 1.0)
    return image.astype(np.float32), label, shapes


def generate(num_examples: int, *, image_size: int, seed: int, split: str) -> dict[str, np.ndarray]:
    """The first `num_examples` examples of `split`.

    Returns:
        `{"inputs": float32 [n, size, size, 3], "label": int32 [n, size, size]}`.
    """
    images = np.zeros((num_examples, image_size, image_size, 3), np.float32)
    labels = np.zeros((num_examples, image_size, image_size), np.int32)
    for i in range(num_examples):
        images[i], labels[i], _ = sample_example(image_size, seed, split, i)
    return {"inputs": images, "label": labels}


def check_options(
    image_size: int, num_train_examples: int, num_test_examples: int, seed: int
) -> tuple[int, int, int, int]:
    """The options of a synthetic shapes dataset, checked; a ValueError names a bad one."""
    image_size = check_positive_int("image_size", image_size)
    if image_size < 8:
        raise ValueError(f"`image_size` (={image_size}) must be at least 8. Received: {image_size}.")
    num_train_examples = check_positive_int("num_train_examples", num_train_examples)
    num_test_examples = check_positive_int("num_test_examples", num_test_examples)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` (={seed!r}) must be a non-negative integer. Received: {seed!r}.")
    return image_size, num_train_examples, num_test_examples, seed


def synthetic_segmentation_dataset(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    image_size: int = 32,
    num_train_examples: int = 4096,
    num_test_examples: int = 512,
    seed: int = 0,
    valid_fraction: float | None = None,
) -> Dataset:
    """The synthetic shapes segmentation dataset: 4 classes (background + 3 shapes).

    Arguments:
        batch_size: training examples per batch on this host.
        eval_batch_size: evaluation examples per batch on this host.
        shuffle_seed: seed of the training order.
        process_index: this host's index.
        process_count: the number of hosts.
        image_size: height and width of the images (at least 8).
        num_train_examples: size of the training split (all hosts).
        num_test_examples: size of the held-out split (all hosts).
        seed: seed of the images: the same seed gives the same dataset.
        valid_fraction: if given, a float in (0, 1): the last `round(valid_fraction *
            num_train_examples)` training examples are held out as the validation
            split (see `_holdout.py`).

    Returns:
        A `Dataset` whose batches hold `inputs` float32 `[batch, size, size, 3]`,
        `label` int32 `[batch, size, size]` and `batch_mask` `[batch]`. There is one
        held-out split: `valid_iter` and `test_iter` are both passes over it, unless
        `valid_fraction` holds out part of the training split.
    """
    image_size, num_train_examples, num_test_examples, seed = check_options(
        image_size, num_train_examples, num_test_examples, seed
    )
    process_index, process_count = check_process(process_index, process_count)
    hosts = {"process_index": process_index, "process_count": process_count}
    valid_fraction = check_valid_fraction(valid_fraction)
    train = generate(num_train_examples, image_size=image_size, seed=seed, split="train")
    train, valid, valid_source = held_out_arrays(train, valid_fraction)
    train_iter = train_batches(
        train,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        state_spec={"dataset": "synthetic_segmentation", "image_size": image_size, "seed": seed},
        **hosts,
    )
    test = generate(num_test_examples, image_size=image_size, seed=seed, split="test")
    test_iter = EvalBatches(test, batch_size=eval_batch_size, **hosts)
    valid_iter = test_iter if valid is None else EvalBatches(valid, batch_size=eval_batch_size, **hosts)
    meta_data = MetaData(
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        input_shape=(-1, image_size, image_size, 3),
        input_dtype=np.float32,
        num_train_examples=len(train["inputs"]),
        num_eval_examples=num_test_examples if valid is None else len(valid["inputs"]),
        target_is_onehot=False,
        dataset_name="synthetic_segmentation",
        valid_source=valid_source,
    )
    return Dataset(train_iter, valid_iter, test_iter, meta_data)
