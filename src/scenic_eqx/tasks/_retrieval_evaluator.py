"""Image-text retrieval over a whole evaluation set: recall@k in both directions."""

import numpy as np

from ._evaluator import Evaluator

# Rows of the similarity matrix computed at a time: memory stays O(rows x set size).
_CHUNK = 512


def as_tuple(value: object) -> object:
    """A list as a tuple (configs give lists); anything else unchanged, to be checked."""
    return tuple(value) if isinstance(value, list) else value


def check_recall_at(recall_at: object) -> None:
    """Raises unless `recall_at` is a tuple of distinct positive integers."""
    if not isinstance(recall_at, tuple) or not all(
        isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1 for k in recall_at
    ):
        raise ValueError(
            f"`recall_at` must be a tuple of positive integers (the k of recall@k). Received: {recall_at!r}."
        )
    if len(set(recall_at)) != len(recall_at):
        raise ValueError(f"`recall_at` must not repeat a k. Received: {recall_at!r}.")


def _ranks(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each query `i`, how many candidates score strictly above candidate `i`."""
    ranks = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), _CHUNK):
        scores = queries[start : start + _CHUNK] @ candidates.T
        rows = np.arange(len(scores))
        own = scores[rows, start + rows][:, None]
        ranks[start : start + _CHUNK] = np.sum(scores > own, axis=1)
    return ranks


class RetrievalEvaluator(Evaluator):
    """Recall@k of image->text and text->image retrieval over every pair of an evaluation.

    Each pair `i` (an image and its text) is a query in both directions: its image
    searches every text of the evaluation set, its text every image. It is a hit at `k`
    when its own partner is among the `k` highest cosine similarities. Ties count in the
    pair's favour: another copy of the same caption does not push the pair's own down.
    Because every embedding of the evaluation is kept and ranked at the end, the result
    does not depend on how the set was split into batches or padded, unlike a recall
    computed within each batch.

    `update` takes L2-normalised embeddings (`ContrastiveTask.evaluator_inputs`); the
    host keeps `2 x examples x dim` float32 values and ranks them `_CHUNK` rows at a time.

    Arguments:
        recall_at: the `k`s to report (distinct positive integers).
    """

    def __init__(self, recall_at: tuple[int, ...] = (1, 5)):
        recall_at = as_tuple(recall_at)
        check_recall_at(recall_at)
        self.recall_at = recall_at
        self._images: list[np.ndarray] = []
        self._texts: list[np.ndarray] = []

    def update(self, inputs: dict[str, np.ndarray]) -> None:
        """Adds one batch: `image_embedding` and `text_embedding` `[batch, dim]` (unit
        rows), `batch_mask` `[batch]`; padding rows (mask 0) are dropped."""
        missing = [k for k in ("image_embedding", "text_embedding", "batch_mask") if k not in inputs]
        if missing:
            raise ValueError(
                f"`inputs` must hold {', '.join(missing)}. Received: keys {sorted(map(str, inputs))}."
            )
        images, texts = (np.asarray(inputs[k], np.float32) for k in ("image_embedding", "text_embedding"))
        real = np.asarray(inputs["batch_mask"]) > 0
        if images.ndim != 2 or images.shape != texts.shape or real.shape != images.shape[:1]:
            raise ValueError(
                "`inputs` must hold `image_embedding` and `text_embedding` of one shape "
                "[batch, dim] and `batch_mask` [batch]. Received: shapes "
                f"{images.shape}, {texts.shape} and {real.shape}."
            )
        self._images.append(images[real])
        self._texts.append(texts[real])

    def result(self) -> dict[str, float]:
        """`image_to_text_recall_at_<k>` and `text_to_image_recall_at_<k>`: the fraction
        of the real pairs added that are hits at `k` (NaN when none were added)."""
        images = np.concatenate(self._images) if self._images else np.zeros((0, 0), np.float32)
        texts = np.concatenate(self._texts) if self._texts else np.zeros((0, 0), np.float32)
        ranks = {"image_to_text": _ranks(images, texts), "text_to_image": _ranks(texts, images)}
        results = {}
        for direction, rank in ranks.items():
            for k in self.recall_at:
                results[f"{direction}_recall_at_{k}"] = (
                    float(np.mean(rank < k)) if len(rank) else float("nan")
                )
        return results
