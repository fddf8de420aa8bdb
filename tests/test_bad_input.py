"""The bad-input table: every public entry point refuses a wrong input with a clear error.

Each row is a call and the error it must raise: the message names the argument, what was
expected and what was received ("Received: ..."). Models are traced, not compiled; a few
rows train or evaluate one step. The suite's jaxtyping checks are switched off here, so
the rows see what a user sees (those checks would catch wrong ranks and dtypes first).

Rows marked `needs wiring` pass once `loops.fit` and `loops.evaluate` call
`loops._batch_checks.check_batch` on each batch (or word their messages that way); until
then they are strict expected failures, so wiring them is noticed.
"""

import functools
import io
import pathlib
import pickle
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from scenic_eqx import _config, cli, loops, nn, tasks
from scenic_eqx.tasks import _matchers

CONFIG = "projects/baselines/configs/digits_cnn.py"
F32 = jnp.float32

# Tiny constructor arguments of each family (as in tests/nn/test_zoo.py).
_TRANSFORMER = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32}
TINY = {
    "vit_ti16": {**_TRANSFORMER, "image_size": 16, "patch_size": 4},
    "mixer_s16": {"hidden_size": 16, "num_layers": 1, "tokens_mlp_dim": 8,
                  "channels_mlp_dim": 32, "image_size": 16, "patch_size": 4},
    "vivit_ti16x2": {**_TRANSFORMER, "image_size": 16, "num_frames": 4, "tubelet_size": (2, 4, 4)},
    "resnet18": {"width": 4, "stem": "cifar"},
    "bit_r50x1": {"depth": 26, "width": 8, "num_groups": 2},
    "unet": {"base_features": 4, "num_levels": 2, "num_groups": 2},
    "detr_r50": {"backbone_depth": 18, "backbone_width": 4, "backbone_stem": "cifar", "dim": 16,
                 "num_heads": 2, "mlp_dim": 32, "num_encoder_layers": 1,
                 "num_decoder_layers": 1, "num_queries": 4},
    "simple_cnn": {"num_filters": (4,)},
}  # fmt: skip


# Every row sees the errors a user sees with the annotation checks off.
pytestmark = pytest.mark.usefixtures("without_annotation_checks")


@functools.cache
def _model(name):
    """The tiny model `name`, as shapes only (its initialisation is never computed)."""
    build = lambda: nn.create(name, num_classes=3, key=jax.random.key(0), **TINY[name])  # noqa: E731
    return eqx.filter_eval_shape(build)


def _call(name, shape, dtype=F32):
    """Traces the model `name` on one example of `shape`, batched as the loops do."""
    model = _model(name) if isinstance(name, str) else name
    is_index = lambda leaf: isinstance(leaf, eqx.nn.StateIndex)  # noqa: E731
    has_state = any(is_index(leaf) for leaf in jax.tree.leaves(model, is_leaf=is_index))

    def forward(model, batch):
        if has_state:
            apply = lambda x, state: model(x, state)[0]  # noqa: E731
            return jax.vmap(apply, (0, None), axis_name="batch")(batch, eqx.nn.State(model))
        return jax.vmap(model)(batch)

    return eqx.filter_eval_shape(forward, model, jax.ShapeDtypeStruct((1, *shape), dtype))


def _input(model):
    return rf"`x` \(the input of {model}\) must"


# --- tasks ------------------------------------------------------------------------------

LOGITS = jnp.zeros((4, 3))
DETECTION_OUTPUTS = {"pred_logits": jnp.zeros((2, 4, 4)), "pred_boxes": jnp.full((2, 4, 4), 0.5)}


def _boxes(labels, mask=None):
    labels = jnp.asarray(labels, jnp.int32)
    mask = jnp.ones(labels.shape) if mask is None else jnp.asarray(mask, F32)
    return {"boxes": jnp.full((*labels.shape, 4), 0.5), "labels": labels, "box_mask": mask}


# --- weights -----------------------------------------------------------------------------

VIT = {"num_classes": 5, "patch_size": 8, "hidden_size": 16, "num_layers": 2, "num_heads": 2,
       "mlp_dim": 32, "image_size": 32}  # fmt: skip
FIXTURE = "tests/nn/fixtures/google_vit.npz"


def _vit():
    return eqx.filter_eval_shape(nn.ViT, **VIT, key=jax.random.key(0))


def _write_npz(tmp_path, edit):
    arrays = dict(np.load(FIXTURE))
    edit(arrays)
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    return path


def _set(key, value):
    return lambda arrays: arrays.__setitem__(key, value)


def _empty_file(path):
    path.write_bytes(b"")
    return path


def _truncated(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(pathlib.Path(FIXTURE).read_bytes()[:1000])
    return path


def _pickled(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(pickle.dumps({"head/bias": np.zeros(5)}))
    return path


# --- loops -------------------------------------------------------------------------------


class _Linear(eqx.Module):
    """A one-example classifier of 4 features into 3 classes."""

    weight: jax.Array

    def __call__(self, x, *, key=None):
        return self.weight @ x


def _batches(num=2, size=8, **entries):
    rng = np.random.default_rng(0)
    batch = {
        "inputs": rng.normal(size=(size, 4)).astype(np.float32),
        "label": rng.integers(0, 3, size=size).astype(np.int32),
        "batch_mask": np.ones(size, np.float32),
    }
    batch.update(entries)
    batch = {k: v for k, v in batch.items() if v is not None}
    return [batch] * num


def _fit(batches, **kwargs):
    kwargs = {"num_steps": 1, "log_every": 1, **kwargs}
    model = _Linear(jnp.zeros((3, 4)))
    return loops.fit(
        model,
        tasks.ClassificationTask(),
        batches,
        optimizer=optax.sgd(0.1),
        key=jax.random.key(0),
        progress=False,
        **kwargs,
    )


def _evaluate(batches):
    return loops.evaluate(_Linear(jnp.zeros((3, 4))), tasks.ClassificationTask(), batches)


# --- configs and the command line ----------------------------------------------------------


def _override(assignment):
    _config.apply_override(_config.load_config(CONFIG), assignment)


class CommandLineError(Exception):
    """What `scenic-eqx` printed before exiting with code 2."""


def _cli(*overrides, tmp_path):
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        argv = ["train", "--config", CONFIG, "--workdir", str(tmp_path), *overrides]
        code = cli.main(argv)
        printed = sys.stderr.getvalue()
    finally:
        sys.stderr = stderr
    if code == 2:
        raise CommandLineError(printed)
    return code


def _config_file(tmp_path, source):
    path = tmp_path / "config.py"
    path.write_text(source)
    return _config.load_config(str(path))


# --- the table ----------------------------------------------------------------------------

ROWS = [
    # Models: a wrong rank, dtype, channel count or size, refused at trace time.
    (
        "vit_1_channel",
        lambda t: _call("vit_ti16", (16, 16, 1)),
        ValueError,
        _input("ViT") + r" have size 3 on its `channels` axis \(axis 2 of \(height, width, channels\)\), "
        r"from `in_channels` \(=3\)\. Received: shape \(16, 16, 1\)\.",
    ),
    (
        "vit_batch_into_one_example",
        lambda t: _call("vit_ti16", (2, 16, 16, 3)),
        ValueError,
        _input("ViT") + r" have rank 3, .* It takes one example: batch it with `jax.vmap`\. "
        r"Received: shape \(2, 16, 16, 3\)\.",
    ),
    (
        "vit_uint8_image",
        lambda t: _call("vit_ti16", (16, 16, 3), jnp.uint8),
        TypeError,
        _input("ViT") + r" be a floating-point array .* Received: dtype uint8\.",
    ),
    (
        "vit_other_image_size",
        lambda t: _call("vit_ti16", (32, 16, 3)),
        ValueError,
        _input("ViT") + r" have size 16 on its `height` axis .* from `image_size` \(=16x16\)\. "
        r"Received: shape \(32, 16, 3\)\.",
    ),
    (
        "mixer_1_channel",
        lambda t: _call("mixer_s16", (16, 16, 1)),
        ValueError,
        _input("MlpMixer") + r" have size 3 on its `channels` axis",
    ),
    (
        "mixer_int_tokens",
        lambda t: _call("mixer_s16", (16, 16, 3), jnp.int32),
        TypeError,
        _input("MlpMixer") + r" be a floating-point array .* Received: dtype int32\.",
    ),
    (
        "vivit_1_channel",
        lambda t: _call("vivit_ti16x2", (4, 16, 16, 1)),
        ValueError,
        _input("ViViT") + r" have size 3 on its `channels` axis \(axis 3 of \(time, height, width, "
        r"channels\)\)",
    ),
    (
        "vivit_a_frame_not_a_clip",
        lambda t: _call("vivit_ti16x2", (16, 16, 3)),
        ValueError,
        r"`x` \(the input of ViViT\) must be one clip \(time, height, width, channels\) or its "
        r"views .* Received: shape \(16, 16, 3\)\.",
    ),
    (
        "vivit_other_num_frames",
        lambda t: _call("vivit_ti16x2", (6, 16, 16, 3)),
        ValueError,
        _input("ViViT") + r" have size 4 on its `time` axis .* from `num_frames` x `image_size` "
        r"\(=4x16x16\)\.",
    ),
    (
        "resnet_int_image",
        lambda t: _call("resnet18", (16, 16, 3), jnp.int32),
        TypeError,
        _input("ResNet") + r" be a floating-point array .* Received: dtype int32\.",
    ),
    (
        "resnet_rank_2",
        lambda t: _call("resnet18", (16, 3)),
        ValueError,
        _input("ResNet") + r" have rank 3, shape \(height, width, channels\)\. Received: shape \(16, 3\)\.",
    ),
    (
        "bit_1_channel",
        lambda t: _call("bit_r50x1", (16, 16, 1)),
        ValueError,
        _input("BiTResNet") + r" have size 3 on its `channels` axis",
    ),
    (
        "unet_batch_into_one_example",
        lambda t: _call("unet", (2, 16, 16, 3)),
        ValueError,
        _input("UNet") + r" have rank 3, .* Received: shape \(2, 16, 16, 3\)\.",
    ),
    (
        "unet_not_divisible",
        lambda t: _call("unet", (15, 16, 3)),
        ValueError,
        r"The height and width of `x` must be divisible by 2\*\*\(num_levels - 1\) \(=2\)\. "
        r"Received: 15x16\.",
    ),
    (
        "detr_1_channel",
        lambda t: _call("detr_r50", (16, 16, 1)),
        ValueError,
        _input("DETR") + r" have size 3 on its `channels` axis",
    ),
    (
        "simple_cnn_uint8",
        lambda t: _call("simple_cnn", (16, 16, 3), jnp.uint8),
        TypeError,
        _input("SimpleCNN") + r" be a floating-point array",
    ),
    (
        "fully_connected_other_size",
        lambda t: _call(
            nn.create(
                "fully_connected",
                num_classes=3,
                input_shape=(8, 8, 3),
                hidden_sizes=(4,),
                key=jax.random.key(0),
            ),
            (8, 8, 1),
        ),
        ValueError,
        _input("FullyConnected") + r" hold 192 values, .* Received: shape \(8, 8, 1\) \(64 values\)\.",
    ),
    (
        "patch_embedding_1_channel",
        lambda t: nn.PatchEmbedding(3, 8, 4, key=jax.random.key(0))(jnp.ones((8, 8, 1))),
        ValueError,
        _input("PatchEmbedding") + r" have size 3 on its `channels` axis",
    ),
    # nn.create and nn.load_weights.
    (
        "create_unknown_name",
        lambda t: nn.create("vit_b17", num_classes=3, key=jax.random.key(0)),
        ValueError,
        r"Unknown model `name`\. Did you mean 'vit_b16'.* Received: 'vit_b17'\.",
    ),
    (
        "create_unknown_argument",
        lambda t: nn.create("vit_ti16", num_classes=3, hiden_size=8, key=jax.random.key(0)),
        ValueError,
        r"`vit_ti16` takes the arguments: .* Did you mean 'hidden_size'\? Received: "
        r"unknown argument 'hiden_size'\.",
    ),
    (
        "create_zero_classes",
        lambda t: nn.create("simple_cnn", num_classes=0, key=jax.random.key(0)),
        ValueError,
        r"`num_classes` must be a positive integer\. Received: 0\.",
    ),
    (
        "load_weights_missing_file",
        lambda t: nn.load_weights(_vit(), t / "no.npz"),
        FileNotFoundError,
        r"`path` must be an existing checkpoint file\. Received: '.*no\.npz'\.",
    ),
    (
        "load_weights_wrong_file_type",
        lambda t: nn.load_weights(_vit(), _empty_file(t / "w.h5")),
        ValueError,
        r"`path` must be a Google `\.npz`, a timm/transformers/OpenAI `\.safetensors` or a torch "
        r"`\.pt`/`\.pth`/`\.bin` checkpoint\. Received: '.*w\.h5'\.",
    ),
    (
        "load_weights_truncated",
        lambda t: nn.load_weights(_vit(), _truncated(t)),
        ValueError,
        r"`path` must be a complete `\.npz` archive .* Received: '.*weights\.npz' \(1000 bytes\), "
        r"which cannot be read",
    ),
    (
        "load_weights_pickle",
        lambda t: nn.load_weights(_vit(), _pickled(t)),
        ValueError,
        r"`path` must hold numeric arrays only\. Received: .* where the file is a pickle: reading it "
        r"would unpickle Python objects",
    ),
    (
        "load_weights_nan",
        lambda t: nn.load_weights(_vit(), _write_npz(t, _set("head/bias", np.full(5, np.nan, F32)))),
        ValueError,
        r"must hold finite weights .* Received: 5 NaN and 0 infinite value\(s\) of 5 in "
        r"`head\.bias`",
    ),
    (
        "load_weights_shape_mismatch",
        lambda t: nn.load_weights(_vit(), _write_npz(t, _set("head/bias", np.zeros(7, F32)))),
        ValueError,
        r"Checkpoint '.*weights\.npz' must have the shapes of the ViT's parameters\. "
        r"Received: `head\.bias` \(checkpoint key 'head/bias'\): checkpoint \(7,\), model \(5,\)\.",
    ),
    (
        "load_weights_unsupported_model",
        lambda t: nn.load_weights(eqx.nn.Linear(2, 2, key=jax.random.key(0)), FIXTURE),
        ValueError,
        r"Cannot load a Google \.npz checkpoint into a Linear",
    ),
    # Tasks: label shapes and values, missing labels, constructor arguments.
    (
        "classification_one_based_labels",
        lambda t: tasks.ClassificationTask().loss(LOGITS, {"label": jnp.array([1, 2, 3, 3])}),
        ValueError,
        r'`batch\["label"\]` must hold class indices in \[0, 3\) \(`num_classes` = 3, '
        r"the logits' last axis\)\. Received: 2 value\(s\) outside it, from 3 to 3; the counted "
        r"labels span \[1, 3\]\.",
    ),
    (
        "classification_label_shape",
        lambda t: tasks.ClassificationTask().loss(LOGITS, {"label": jnp.zeros((4, 2), jnp.int32)}),
        ValueError,
        r'`batch\["label"\]` must be integer labels of shape \(4,\) or one-hot/soft '
        r"targets of shape \(4, 3\), .* Received: shape \(4, 2\)\.",
    ),
    (
        "classification_float_labels",
        lambda t: tasks.ClassificationTask().loss(LOGITS, {"label": jnp.zeros(4)}),
        ValueError,
        r'`batch\["label"\]` of shape \(4,\) must hold integer class indices\. Received: dtype float32\.',
    ),
    (
        "classification_missing_label",
        lambda t: tasks.ClassificationTask().loss(LOGITS, {"inputs": LOGITS, "labels": LOGITS}),
        ValueError,
        r'`batch` must have a "label" entry, which ClassificationTask reads\. Received: '
        r"a batch with keys \['inputs', 'labels'\]\.",
    ),
    (
        "classification_mask_shape",
        lambda t: tasks.ClassificationTask().loss(
            LOGITS, {"label": jnp.zeros(4, jnp.int32), "batch_mask": jnp.ones((4, 1))}
        ),
        ValueError,
        r'`batch\["batch_mask"\]` must have shape \(4,\), .* Received: shape \(4, 1\)\.',
    ),
    (
        "multilabel_label_2",
        lambda t: tasks.MultiLabelClassificationTask().loss(LOGITS, {"label": 2 * jnp.ones((4, 3))}),
        ValueError,
        r'`batch\["label"\]` must hold multi-hot or soft labels in \[0, 1\]\. Received: '
        r"12 value\(s\) outside it, from 2 to 2",
    ),
    (
        "segmentation_label_outside",
        lambda t: tasks.SegmentationTask().loss(
            jnp.zeros((1, 2, 2, 3)), {"label": jnp.array([[[0, 1], [3, 255]]])}
        ),
        ValueError,
        r"class indices in \[0, 3\) .* or `ignore_label` \(=255\), on pixels that count\. "
        r"Received: 1 value\(s\) outside it, from 3 to 3",
    ),
    (
        "detection_label_not_a_dict",
        lambda t: tasks.DetectionTask().loss(DETECTION_OUTPUTS, {"label": jnp.zeros((2, 3))}),
        ValueError,
        r'`batch\["label"\]` must be a dict with "boxes", "labels" and "box_mask"\. '
        r"Received: \w+\.",
    ),
    (
        "detection_class_outside",
        lambda t: tasks.DetectionTask().loss(DETECTION_OUTPUTS, {"label": _boxes([[0, 5], [1, 2]])}),
        ValueError,
        r'`batch\["label"\]\["labels"\]` must hold class indices in \[0, 3\) .* for '
        r"real boxes .* Received: 1 value\(s\) outside it, from 5 to 5",
    ),
    (
        "encoder_decoder_token_outside",
        lambda t: tasks.EncoderDecoderTask().loss(jnp.zeros((1, 2, 3)), {"label": jnp.array([[1, 9]])}),
        ValueError,
        r"must hold token ids in \[0, 3\) .* Received: 1 value\(s\) outside it, from 9 to 9",
    ),
    (
        "create_task_unknown_name",
        lambda t: tasks.create_task("clasification"),
        ValueError,
        r"`name` must be a registered task: .* Did you mean 'classification'.* Received: "
        r"'clasification'\.",
    ),
    (
        "create_task_unknown_argument",
        lambda t: tasks.create_task("classification", label_smothing=0.1),
        ValueError,
        r"Task 'classification' takes the arguments: label_smoothing, top_k, loss_type, focal_gamma\. Did you mean "
        r"'label_smoothing'\? Received: unknown argument\(s\) 'label_smothing'\.",
    ),
    (
        "create_task_bad_matcher",
        lambda t: tasks.create_task("detection", matcher="hungarain"),
        ValueError,
        r"`matcher` must be 'auto' or one of 'hungarian', .* Received: 'hungarain'\.",
    ),
    (
        "label_smoothing_out_of_range",
        lambda t: tasks.ClassificationTask(label_smoothing=1.0),
        ValueError,
        r"`label_smoothing` must be a number in \[0, 1\)\. Received: 1\.0\.",
    ),
    (
        "matcher_cost_rank_2",
        lambda t: _matchers.hungarian_matcher(jnp.zeros((3, 4))),
        ValueError,
        r"`cost` must have shape \[batch, n, m\]\. Received: shape \(3, 4\)\.",
    ),
    # loops.fit and loops.evaluate.
    pytest.param(
        "fit_batch_without_label",
        lambda t: _fit(_batches(label=None, labels=np.zeros(8))),
        ValueError,
        r'`batch` must have a "label" entry, which ClassificationTask reads\. Received: '
        r"a batch with keys \['batch_mask', 'inputs', 'labels'\]\.",
        id="fit_batch_without_label",
    ),
    pytest.param(
        "fit_batch_without_inputs",
        lambda t: _fit(_batches(inputs=None, image=np.zeros((8, 4), np.float32))),
        ValueError,
        r"Received: a batch with keys \['batch_mask', 'image', 'label'\], without 'inputs'\.",
        id="fit_batch_without_inputs",
    ),
    pytest.param(
        "fit_mismatched_sizes",
        lambda t: _fit(_batches(label=np.zeros(7, np.int32))),
        ValueError,
        r"every entry must have the same leading \(batch\) size\. Received: "
        r"`batch_mask` \(8,\), `inputs` \(8, 4\), `label` \(7,\)\.",
        id="fit_mismatched_sizes",
    ),
    (
        "fit_mask_shape",
        lambda t: _fit(_batches(batch_mask=np.ones((8, 2), np.float32))),
        ValueError,
        r"batch_mask.* must have shape \(8,\).* Received: shape \(8, 2\)\.",
    ),
    (
        "fit_batch_not_divisible_by_devices",
        lambda t: _fit(_batches(size=12)),
        ValueError,
        r"must be divisible .* \(=8\)\. Received: a batch of 12\.",
    ),
    pytest.param(
        "fit_no_batches",
        lambda t: _fit([]),
        ValueError,
        r"`train_batches`.*Received:",
        id="fit_no_batches",
    ),
    (
        "fit_zero_steps",
        lambda t: _fit(_batches(), num_steps=0),
        ValueError,
        r"`num_steps` must be a positive integer\. Received: 0\.",
    ),
    (
        "fit_labels_outside_the_classes",
        lambda t: _fit(_batches(label=np.full(8, 3, np.int32))),
        Exception,
        r'`batch\["label"\]` must hold class indices in \[0, 3\) .* Received: 8 '
        r"value\(s\) outside it, from 3 to 3",
    ),
    (
        "evaluate_labels_outside_the_classes",
        lambda t: _evaluate(_batches(label=np.arange(8, dtype=np.int32))),
        Exception,
        r"Received: 5 value\(s\) outside it, from 3 to 7; the counted labels span \[0, 7\]\.",
    ),
    (
        "evaluate_batch_without_label",
        lambda t: _evaluate(_batches(label=None)),
        ValueError,
        r'`batch` must have a "label" entry, which ClassificationTask reads\. Received: a batch '
        r"with keys \['batch_mask', 'inputs'\]\.",
    ),
    pytest.param(
        "evaluate_batch_without_inputs",
        lambda t: _evaluate(_batches(inputs=None)),
        ValueError,
        r"Received: a batch with keys \['batch_mask', 'label'\], without 'inputs'\.",
        id="evaluate_batch_without_inputs",
    ),
    pytest.param(
        "evaluate_no_batches",
        lambda t: _evaluate([]),
        ValueError,
        r"`batches`.*Received:",
        id="evaluate_no_batches",
    ),
    # Configs and the command line.
    (
        "override_not_a_number",
        lambda t: _override("num_train_steps=abc"),
        ValueError,
        r"`config.num_train_steps` must be an integer, like its value in the config \(.*\)\. "
        r"Received: 'abc'\.",
    ),
    (
        "override_float_for_an_int",
        lambda t: _override("batch_size=0.5"),
        ValueError,
        r"`config.batch_size` must be an integer, .* Received: '0\.5'\.",
    ),
    (
        "override_string_for_a_number",
        lambda t: _override("schedule_kwargs.base_learning_rate='0.1'"),
        ValueError,
        r"`config.schedule_kwargs.base_learning_rate` must be a number, .* Received: \"'0\.1'\"\.",
    ),
    (
        "override_typo",
        lambda t: _override("num_train_step=3"),
        ValueError,
        r"`config` has no key 'num_train_step'\. Did you mean 'num_train_steps'\? Valid keys: .* "
        r"Received: `num_train_step=3`\.",
    ),
    (
        "override_scalar_for_a_group",
        lambda t: _override("model=3"),
        ValueError,
        r"`config.model` is a group of keys \(in_channels, num_filters\): set one of them .* "
        r"Received: '3'\.",
    ),
    (
        "override_into_a_value",
        lambda t: _override("seed.value=3"),
        ValueError,
        r"`config.seed` is a value \(0\), not a group of keys, so it has no key 'value'\.",
    ),
    (
        "override_malformed",
        lambda t: _override("seed"),
        ValueError,
        r"A config override must look like `key=value`\. Received: 'seed'\.",
    ),
    (
        "config_file_missing",
        lambda t: _config.load_config("no/such.py"),
        FileNotFoundError,
        r"`--config` must name an existing Python file .* Received: 'no/such\.py'",
    ),
    (
        "config_not_a_config_dict",
        lambda t: _config_file(t, "def get_config():\n    return {'seed': 0}\n"),
        ValueError,
        r"`get_config\(\)` in '.*config\.py' must return an `ml_collections\.ConfigDict`\. "
        r"Received: dict\.",
    ),
    (
        "config_unknown_key",
        lambda t: _config.check_keys(ml_collections.ConfigDict({"num_train_step": 1})),
        ValueError,
        r"Unknown config key\(s\) \['num_train_step'\]\. .* Received: \['num_train_step'\]\.",
    ),
    (
        "cli_not_a_number",
        lambda t: _cli("--config.num_train_steps=abc", tmp_path=t),
        CommandLineError,
        r"`config.num_train_steps` must be an integer, .* Received: 'abc'\.",
    ),
    (
        "cli_float_for_an_int",
        lambda t: _cli("--config.seed", "1.5", tmp_path=t),
        CommandLineError,
        r"`config.seed` must be an integer, .* Received: '1\.5'\.",
    ),
]


def _id(row):
    return row.id if hasattr(row, "id") else row[0]


@pytest.mark.parametrize("name, call, error, match", ROWS, ids=[_id(r) for r in ROWS])
def test_bad_input_is_refused_clearly(name, call, error, match, tmp_path):
    with pytest.raises(error, match=match) as caught:
        jax.block_until_ready(call(tmp_path))
    assert "Received:" in str(caught.value), name


def test_the_table_covers_every_entry_point():
    names = [r.values[0] if hasattr(r, "values") else r[0] for r in ROWS]
    assert len(names) >= 40 and len(set(names)) == len(names)
    prefixes = ("vit", "mixer", "vivit", "resnet", "bit", "unet", "detr", "simple_cnn",
                "fully_connected", "create_", "load_weights", "classification", "multilabel",
                "segmentation", "detection", "encoder_decoder", "create_task", "fit", "evaluate",
                "override", "config", "cli")  # fmt: skip
    for prefix in prefixes:
        assert any(n.startswith(prefix) for n in names), prefix


def test_padding_examples_may_hold_any_label_through_evaluate():
    # `batch_mask` 0 marks padding: its label is never read, so it is never checked.
    batch = _batches(num=1)[0]
    padded = {**batch, "label": batch["label"].copy(), "batch_mask": batch["batch_mask"].copy()}
    padded["label"][-2:] = [99, -1]
    padded["batch_mask"][-2:] = 0.0
    sliced = {k: v[:-2] for k, v in batch.items()}
    assert _evaluate([padded]) == pytest.approx(_evaluate([sliced]))
