"""Transfer evaluations of a frozen representation: few-shot linear regression and a linear probe.

Each evaluator extracts the model's representation of a training and a test dataset
(`extract_features`), fits a linear classifier on the training features and reports its
accuracy on the test features. Called as `evaluator(model, model_state, mesh)`, each is the
`evaluate` of a `loops.PeriodicEvaluation`, so that `fit` runs it as it trains:

```python
fewshot = loops.FewShotLinearEvaluator(transfer.valid_iter, transfer.test_iter, shots=(1, 5, 10))
loops.fit(..., evaluations=[loops.PeriodicEvaluation("fewshot", every=500, evaluate=fewshot)])
# logs fewshot_1shot_accuracy, fewshot_5shot_accuracy, fewshot_10shot_accuracy
```
"""

from collections.abc import Callable, Iterable, Sequence

import equinox as eqx
import numpy as np
from jax.sharding import Mesh

from ._features import RepresentationFn, extract_features
from ._linear_classifiers import check_labels_in_range, fit_logistic_regression, fit_ridge_classifier

Batches = Iterable[dict] | Callable[[], Iterable[dict]]


def _check_data(name: str, data: object) -> None:
    if not (isinstance(data, Iterable) or callable(data)):
        raise ValueError(
            f"`{name}` must be an iterable of batches (re-iterated at each evaluation) or a "
            f"zero-argument callable returning one. Received: {type(data).__name__}."
        )


def _check_positive_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be a {kind} number. Received: {value!r}.")
    return float(value)


def _check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}.")
    return value


def _num_classes(train_labels: np.ndarray, test_labels: np.ndarray, num_classes: int | None) -> int:
    """`num_classes`, or the largest label plus one; raises on labels outside the classes."""
    for name, labels in (("train_data", train_labels), ("test_data", test_labels)):
        if not labels.size:
            raise ValueError(f"`{name}` must hold at least one real example. Received: none.")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    check_labels_in_range(train_labels, num_classes, "train_data")
    check_labels_in_range(test_labels, num_classes, "test_data")
    return num_classes


class _FeatureEvaluator:
    """An evaluator of a model's frozen features: extracts those of `train_data` and
    `test_data` and scores them with the subclass's `evaluate_features`."""

    train_data: object
    test_data: object
    representation_fn: RepresentationFn | None

    def __call__(
        self, model: eqx.Module, model_state: eqx.nn.State | None = None, mesh: Mesh | None = None
    ) -> dict[str, float]:
        """The evaluation of `model`'s representation (see the class)."""
        options = dict(representation_fn=self.representation_fn, model_state=model_state, mesh=mesh)
        train = extract_features(model, self.train_data, **options)
        test = extract_features(model, self.test_data, **options)
        return self.evaluate_features(*train, *test)

    def evaluate_features(self, train_features, train_labels, test_features, test_labels) -> dict[str, float]:
        raise NotImplementedError


class FewShotLinearEvaluator(_FeatureEvaluator):
    """Few-shot linear regression on frozen features: accuracy with k examples per class.

    For each `k` of `shots`, `k` training examples of every class are drawn (a fixed
    permutation of each class by `seed`, its first `k`: the smaller sets are part of the
    larger ones), a ridge regression onto `{-1, +1}` one-hot targets is solved in closed
    form on their standardised features (`fit_ridge_classifier`: big_vision's few-shot
    evaluator, Kolesnikov et al. 2020, "Big Transfer (BiT)", ECCV 2020; Dosovitskiy et
    al. 2021, "An Image is Worth 16x16 Words", ICLR 2021, report it for ViT), and the
    argmax of its outputs is scored on every test example.

    Arguments:
        train_data: the batches the shots are drawn from (an iterable re-iterated at each
            evaluation, e.g. a `Dataset`'s `valid_iter`, or a zero-argument callable
            returning one): `inputs`, `label` (int class indices) and `batch_mask`.
        test_data: the batches scored, the same way.
        shots: the numbers of examples per class; every class must have at least the
            largest in `train_data`.
        l2_reg: the ridge penalty on the weights (the bias is not penalised). The default,
            `2 ** 10`, is big_vision's.
        seed: chooses the shots.
        representation_fn: `representation_fn(model, x) -> [dim]` on one example (with
            `model_state` as a third argument for a model with state); default: the
            model's pre-logits (`features(x)["pre_logits"]`).
        num_classes: the number of classes; default: the largest label of either dataset
            plus one.

    Calling the evaluator, `evaluator(model, model_state=None, mesh=None)`, returns
    `{f"{k}shot_accuracy": accuracy}` for each `k` of `shots`, as Python floats.
    """

    def __init__(
        self,
        train_data: Batches,
        test_data: Batches,
        *,
        shots: Sequence[int] = (1, 5, 10),
        l2_reg: float = 2.0**10,
        seed: int = 0,
        representation_fn: RepresentationFn | None = None,
        num_classes: int | None = None,
    ):
        _check_data("train_data", train_data)
        _check_data("test_data", test_data)
        if isinstance(shots, int) or not isinstance(shots, Sequence) or not shots:
            raise ValueError(
                f"`shots` must be a non-empty sequence of positive integers. Received: {shots!r}."
            )
        for k in shots:
            _check_positive_int("shots", k)
        if len(set(shots)) != len(shots):
            raise ValueError(f"`shots` must not repeat a number. Received: {tuple(shots)!r}.")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"`seed` must be an integer. Received: {seed!r}.")
        self.train_data, self.test_data = train_data, test_data
        self.shots = tuple(shots)
        self.l2_reg = _check_positive_number("l2_reg", l2_reg)
        self.seed = seed
        self.representation_fn = representation_fn
        self.num_classes = None if num_classes is None else _check_positive_int("num_classes", num_classes)

    def evaluate_features(
        self,
        train_features: np.ndarray,
        train_labels: np.ndarray,
        test_features: np.ndarray,
        test_labels: np.ndarray,
    ) -> dict[str, float]:
        """The few-shot accuracies on given features: `[examples, dim]` and `[examples]`
        labels of the training and the test set."""
        num_classes = _num_classes(train_labels, test_labels, self.num_classes)
        results = {}
        for k, indices in self.shot_indices(train_labels, num_classes).items():
            classifier = fit_ridge_classifier(
                train_features[indices], train_labels[indices], num_classes=num_classes, l2_reg=self.l2_reg
            )
            results[f"{k}shot_accuracy"] = classifier.accuracy(test_features, test_labels)
        return results

    def shot_indices(self, labels: np.ndarray, num_classes: int) -> dict[int, np.ndarray]:
        """`{k: indices}`: the positions in `labels` of the `k` examples drawn per class.

        Raises:
            ValueError: a class has fewer examples than the largest of `shots` (the
                message names the class and the count).
        """
        rng = np.random.default_rng(self.seed)
        per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
        most = max(self.shots)
        for c, members in enumerate(per_class):
            if len(members) < most:
                raise ValueError(
                    f"Class {c} has {len(members)} examples in `train_data`, fewer than the {most} "
                    f"shots asked for (`shots`={self.shots}). Received: {len(labels)} training "
                    f"examples over {num_classes} classes."
                )
        return {k: np.sort(np.concatenate([members[:k] for members in per_class])) for k in self.shots}


class LinearProbeEvaluator(_FeatureEvaluator):
    """A linear probe: logistic regression on frozen features, scored on a test set.

    A multinomial logistic regression with an L2 penalty is fitted on the standardised
    features of every example of `train_data` (`fit_logistic_regression`: full-batch
    L-BFGS to the unique optimum, the solution of scikit-learn's
    `LogisticRegression(C=1 / (l2_reg * examples))`), and its accuracy is measured on
    `test_data`. The usual protocol for a learned representation (Radford et al. 2021,
    "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
    appendix A.3; Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020); choose `l2_reg` on a validation split.

    Arguments:
        train_data: the batches the probe is fitted on (an iterable re-iterated at each
            evaluation, or a zero-argument callable returning one): `inputs`, `label`
            (int class indices) and `batch_mask`. Their features are held in memory.
        test_data: the batches scored, the same way.
        l2_reg: the penalty on the weights, `l2_reg / 2 * ||W||^2` beside the mean
            cross-entropy (the bias is not penalised). Much weaker penalties make the
            optimum flat, and float32 L-BFGS then stops farther from it (the error in
            the weights is up to about `tolerance / l2_reg`).
        max_steps: the most L-BFGS steps.
        tolerance: stop once the gradient's L2 norm is at most this (a `RuntimeWarning`
            says when `max_steps` ran out first).
        representation_fn: as in `FewShotLinearEvaluator`; default: the pre-logits.
        num_classes: the number of classes; default: the largest label plus one.

    Calling the evaluator, `evaluator(model, model_state=None, mesh=None)`, returns
    `{"accuracy": test accuracy}`, a Python float.
    """

    def __init__(
        self,
        train_data: Batches,
        test_data: Batches,
        *,
        l2_reg: float = 1e-3,
        max_steps: int = 1000,
        tolerance: float = 1e-6,
        representation_fn: RepresentationFn | None = None,
        num_classes: int | None = None,
    ):
        _check_data("train_data", train_data)
        _check_data("test_data", test_data)
        self.train_data, self.test_data = train_data, test_data
        self.l2_reg = _check_positive_number("l2_reg", l2_reg)
        self.max_steps = _check_positive_int("max_steps", max_steps)
        self.tolerance = _check_positive_number("tolerance", tolerance, allow_zero=True)
        self.representation_fn = representation_fn
        self.num_classes = None if num_classes is None else _check_positive_int("num_classes", num_classes)

    def evaluate_features(
        self,
        train_features: np.ndarray,
        train_labels: np.ndarray,
        test_features: np.ndarray,
        test_labels: np.ndarray,
    ) -> dict[str, float]:
        """The probe's test accuracy on given features: `[examples, dim]` and `[examples]`
        labels of the training and the test set."""
        num_classes = _num_classes(train_labels, test_labels, self.num_classes)
        classifier, _ = fit_logistic_regression(
            train_features, train_labels, num_classes=num_classes, l2_reg=self.l2_reg,
            max_steps=self.max_steps, tolerance=self.tolerance,
        )  # fmt: skip
        return {"accuracy": classifier.accuracy(test_features, test_labels)}
