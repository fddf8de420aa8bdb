"""The detection baseline config: its smoke version trains end to end and reports COCO AP."""

import json
import math

import equinox as eqx
import jax

from scenic_eqx import _config, nn, run

CONFIG = "projects/baselines/configs/synthetic_detection_detr.py"


def test_smoke_config_trains_and_reports_ap(tmp_path):
    config = _config.load_config(CONFIG + ":smoke")
    results = run.train(config, str(tmp_path))
    assert {"AP", "AP50", "AP75", "loss", "loss_class", "loss_bbox", "loss_giou"} <= set(results)
    assert 0.0 <= results["AP50"] <= 1.0 and math.isfinite(results["loss"])
    assert json.loads((tmp_path / "test_metrics.json").read_text()).keys() == results.keys()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "eval_AP50" in r]
    assert [r["step"] for r in evaluated] == [4]


def test_full_config_builds_a_detr_for_its_images():
    config = _config.load_config(CONFIG)
    assert config.task_name == "detection" and config.dataset_name == "synthetic_detection"
    size = config.dataset.image_size

    def build_and_apply(image):
        model = nn.create(config.model_name, num_classes=3, key=jax.random.key(0), **config.model)
        state = eqx.nn.State(model)
        return jax.vmap(lambda x: model(x, state)[0], axis_name="batch")(image)

    images = jax.ShapeDtypeStruct((1, size, size, 3), jax.numpy.float32)
    outputs = jax.tree.map(lambda x: x.shape[1:], eqx.filter_eval_shape(build_and_apply, images))
    assert outputs["pred_logits"] == (config.model.num_queries, 4)
    assert outputs["aux_pred_boxes"] == (config.model.num_decoder_layers - 1, config.model.num_queries, 4)


def test_coco_recipe_is_the_papers_detr_r50():
    config = _config.load_config("projects/baselines/configs/coco_detr.py")
    _config.check_keys(config)
    assert config.dataset_name == "coco/2017" and config.batch_size == 64
    model = eqx.filter_eval_shape(
        lambda: nn.create(config.model_name, num_classes=80, key=jax.random.key(0), **config.model)
    )
    assert model.query_embedding.shape == (100, 256) and model.class_head.weight.shape == (81, 256)
    # Its backbone group exists: the optimizer labels the backbone's parameters.
    optimizer, schedule = run.build_optimizer(config)
    params = eqx.filter(model, lambda x: isinstance(x, jax.ShapeDtypeStruct) and x.dtype == jax.numpy.float32)
    eqx.filter_eval_shape(optimizer.init, params)
    assert float(schedule(config.num_train_steps // 2)) > 0
