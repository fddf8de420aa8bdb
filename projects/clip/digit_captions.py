"""A generated paired image-text set: scikit-learn's handwritten digits with captions naming them.

Each training image is paired with one caption per template ("a photo of the digit
seven.", "a handwritten 7.", ...), so a digit is named both as a word and as a numeral;
each held-out image gets one caption, its template chosen by its index. The captions
name nothing but the digit: two images of one digit share their captions, so within a
batch a text has several matching images (the contrastive loss still counts only its
own pair as positive).

The split is that of `data.get_dataset("digits")`: the 360 images at the head of a
seed-0 permutation are held out, the other 1,437 train. The dataset `digit_captions`
registered here serves the pairs from memory; `held_out_digits` the held-out images
with their class labels, for zero-shot classification.
"""

import os

import numpy as np
from sklearn.datasets import load_digits

from scenic_eqx import data, run
from scenic_eqx.data import _in_memory

tokenizer = run.import_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer.py"))

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = (
    "a photo of the digit {name}.",
    "a handwritten {numeral}.",
    "the number {name}.",
    "an image of the digit {numeral}.",
    "a scanned handwritten {name}.",
    "{name}.",
)
# Zero-shot classification's prompts, with a digit's name for `{}`: each digit's classifier
# is the mean of their embeddings (prompt ensembling). The last pairs a name with a
# template that training captions give a numeral only.
ZERO_SHOT_TEMPLATES = ("a photo of the digit {}.", "the number {}.", "a handwritten {}.")
NUM_TEST = 360  # as `data.get_dataset("digits")`
CONTEXT_LENGTH = 10


def caption(digit: int, template: str) -> str:
    """`template` with the digit's word (`{name}`) and numeral (`{numeral}`) filled in."""
    return template.format(name=NAMES[digit], numeral=str(digit))


def digit_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{"train": (images, labels), "test": (images, labels)}`: float32 `[n, 8, 8, 1]` in
    [0, 1] (pixel counts 0..16 scaled as the `digits` dataset does) and int32 digits."""
    digits = load_digits()
    images = (np.minimum(digits.images * 16, 255) / 255).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    held_out = np.zeros(len(labels), bool)
    held_out[np.random.default_rng(0).permutation(len(labels))[:NUM_TEST]] = True
    return {"train": (images[~held_out], labels[~held_out]), "test": (images[held_out], labels[held_out])}


def pairs(split: str, tokenize) -> dict[str, np.ndarray]:
    """The pairs of `split`: `{"inputs": {"image", "text"}, "label"}` arrays.

    Training: every image once per caption template; test: every image once, with the
    template of its index modulo their number.
    """
    images, labels = digit_arrays()[split]
    if split == "train":
        templates = np.repeat(np.arange(len(CAPTION_TEMPLATES))[None], len(labels), axis=0).ravel()
        images, labels = (
            np.repeat(images, len(CAPTION_TEMPLATES), axis=0),
            np.repeat(labels, len(CAPTION_TEMPLATES)),
        )
    else:
        templates = np.arange(len(labels)) % len(CAPTION_TEMPLATES)
    texts = [caption(int(d), CAPTION_TEMPLATES[t]) for d, t in zip(labels, templates)]
    return {"inputs": {"image": images, "text": tokenize(texts)}, "label": labels}


def vocabulary() -> list[str]:
    """Every word and mark of the captions and of the zero-shot prompts' class names."""
    texts = [caption(d, t) for d in range(10) for t in CAPTION_TEMPLATES]
    return sorted({word for text in texts for word in tokenizer.split_words(text)})


def make_tokenizer():
    """The `WordTokenizer` of the captions, `CONTEXT_LENGTH` tokens long."""
    return tokenizer.WordTokenizer(vocabulary(), context_length=CONTEXT_LENGTH)


def held_out_digits(*, eval_batch_size: int, process_index: int = 0, process_count: int = 1):
    """The held-out images and their digits, in padded batches `{"inputs", "label", "batch_mask"}`."""
    images, labels = digit_arrays()["test"]
    return _in_memory.EvalBatches(
        {"inputs": images, "label": labels},
        batch_size=eval_batch_size,
        process_index=process_index,
        process_count=process_count,
    )


@data.register("digit_captions", overwrite=True)
def digit_captions(
    *, batch_size: int, eval_batch_size: int, shuffle_seed: int, process_index: int, process_count: int
) -> data.Dataset:
    """The digit-caption pairs, in memory: `get_dataset("digit_captions", ...)`.

    Arguments:
        batch_size, eval_batch_size, shuffle_seed, process_index, process_count: as in
            `data.get_dataset`.

    Returns:
        A `Dataset` whose `inputs` are `{"image": float32 [batch, 8, 8, 1], "text":
        int32 [batch, CONTEXT_LENGTH]}`, with the digit as `label` (int32); 8,622
        training pairs (1,437 images x 6 captions) and 360 held-out ones (`valid_iter`
        is `test_iter`).
    """
    tokenize = make_tokenizer()
    train, test = pairs("train", tokenize), pairs("test", tokenize)
    hosts = {"process_index": process_index, "process_count": process_count}
    train_iter = _in_memory.train_batches(
        train,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        state_spec={"dataset": "digit_captions"},
        **hosts,
    )
    test_iter = _in_memory.EvalBatches(test, batch_size=eval_batch_size, **hosts)
    meta_data = data.MetaData(
        num_classes=len(NAMES),
        class_names=NAMES,
        input_shape=(-1, 8, 8, 1),
        input_dtype=np.float32,
        num_train_examples=len(train["label"]),
        num_eval_examples=len(test["label"]),
        dataset_name="digit_captions",
        extra={"vocab_size": tokenize.vocab_size, "context_length": CONTEXT_LENGTH},
    )
    return data.Dataset(train_iter, test_iter, test_iter, meta_data)
