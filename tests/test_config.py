import ml_collections
import pytest

from scenic_eqx import _config, _experiment, loops

CONFIG = "projects/baselines/configs/digits_cnn.py"


@pytest.fixture
def config():
    return _config.load_config(CONFIG)


def test_overrides_keep_types(config):
    _config.apply_override(config, "num_train_steps=7")
    _config.apply_override(config, "schedule_kwargs.base_learning_rate=1")
    _config.apply_override(config, "model.num_filters=(4, 8)")
    _config.apply_override(config, "optimizer=sgd")
    assert config.num_train_steps == 7
    assert config.schedule_kwargs.base_learning_rate == 1.0
    assert isinstance(config.schedule_kwargs.base_learning_rate, float)
    assert tuple(config.model.num_filters) == (4, 8)
    assert config.optimizer == "sgd"


def test_smoke_argument():
    assert _config.load_config(CONFIG + ":smoke").num_train_steps == 20


@pytest.mark.parametrize(
    "assignment, match",
    [
        ("num_train_step=3", r"`config` has no key 'num_train_step'. Did you mean 'num_train_steps'\? Valid keys: .*batch_size"),
        ("model.depth=3", r"`config.model` has no key 'depth'.* Valid keys: in_channels, num_filters"),
        ("seed", r"must look like `key=value`"),
    ],
)
def test_bad_override_lists_valid_keys(config, assignment, match):
    with pytest.raises(ValueError, match=match):
        _config.apply_override(config, assignment)


def test_unknown_top_level_key_is_an_error(config):
    with config.unlocked():
        config.learning_rate = 0.1
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['learning_rate'\]. Valid keys: .*batch_size"):
        _config.check_keys(config)


def test_unknown_optimizer_and_schedule_list_choices(config):
    config.optimizer = "adamm"
    with pytest.raises(ValueError, match=r"Unknown `config.optimizer` \(='adamm'\). Did you mean .*'adam'.*Valid choices: .*sgd"):
        _experiment.build_optimizer(config)
    config.optimizer = "adam"
    config.schedule = "cosine"
    with pytest.raises(ValueError, match=r"Unknown `config.schedule` \(='cosine'\).*Valid choices: constant, warmup_cosine_decay"):
        _experiment.build_optimizer(config)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _config.load_config("no/such/config.py")


def test_config_without_get_config(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no `get_config"):
        _config.load_config(str(path))


def test_learning_rate_multipliers_scale_their_parameter_groups(config):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    class Model(eqx.Module):
        backbone: dict
        head: jax.Array

    params = Model({"conv": jnp.ones(3), "norm": jnp.ones(2)}, jnp.ones(4))
    grads = jax.tree.map(jnp.ones_like, params)
    config.optimizer, config.optimizer_kwargs = "sgd", ml_collections.ConfigDict()
    config.schedule, config.schedule_kwargs = "constant", ml_collections.ConfigDict({"base_learning_rate": 0.5})
    config.grad_clip_norm = None
    with config.unlocked():
        config.learning_rate_multipliers = {"backbone": 0.1}
    _config.check_keys(config)
    optimizer, _ = _experiment.build_optimizer(config)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    assert jnp.allclose(updates.head, -0.5) and jnp.allclose(updates.backbone["conv"], -0.05)
    assert jnp.allclose(updates.backbone["norm"], -0.05)
    # The grouped optimizer state can be laid out like the parameters (as `fit` does).
    mesh = loops.data_mesh()
    param_shardings, _ = loops.parameter_shardings(params, mesh, "replicated")
    opt_state = optimizer.init(params)
    opt_shardings = loops.opt_state_shardings(optimizer, opt_state, param_shardings, mesh)
    assert len(jax.tree.leaves(opt_shardings)) == len(jax.tree.leaves(opt_state))
    config.learning_rate_multipliers = {"backbones": 0.1}
    optimizer, _ = _experiment.build_optimizer(config)
    with pytest.raises(ValueError, match=r"names \['backbones'\], which match no trainable parameter"):
        optimizer.init(params)
