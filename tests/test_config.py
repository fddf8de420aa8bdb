import ml_collections
import pytest

from scenic_eqx import _config, loops, run

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
        (
            "num_train_step=3",
            r"`config` has no key 'num_train_step'. Did you mean 'num_train_steps'\? Valid keys: .*batch_size",
        ),
        ("model.depth=3", r"`config.model` has no key 'depth'.* Valid keys: in_channels, num_filters"),
        ("seed", r"must look like `key=value`. Received: 'seed'."),
        (
            "num_train_steps.x=1",
            r"`config.num_train_steps` is a value \(1000\), not a group of keys, so it has no key 'x'",
        ),
    ],
)
def test_bad_override_lists_valid_keys(config, assignment, match):
    with pytest.raises(ValueError, match=match):
        _config.apply_override(config, assignment)


def test_unknown_top_level_key_is_an_error(config):
    with config.unlocked():
        config.learning_rate = 0.1
    with pytest.raises(
        ValueError,
        match=r"Unknown config key\(s\) \['learning_rate'\]. Valid keys: .*batch_size.* Received: \['learning_rate'\]\.",
    ):
        _config.check_keys(config)


def test_unknown_optimizer_and_schedule_list_choices(config):
    config.optimizer = "adamm"
    with pytest.raises(
        ValueError,
        match=r"Unknown `config.optimizer` \(='adamm'\). Did you mean .*'adam'.*Valid choices: .*sgd",
    ):
        run.build_optimizer(config)
    config.optimizer = "adam"
    config.schedule = "cosine"
    with pytest.raises(
        ValueError,
        match=r"Unknown `config.schedule` \(='cosine'\).*Valid choices: constant, warmup_cosine_decay",
    ):
        run.build_optimizer(config)


def test_missing_config_file():
    with pytest.raises(
        FileNotFoundError,
        match=r"`--config` must name an existing Python file .* Received: 'no/such/config.py': .* does not exist",
    ):
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
    config.schedule, config.schedule_kwargs = (
        "constant",
        ml_collections.ConfigDict({"base_learning_rate": 0.5}),
    )
    config.grad_clip_norm = None
    with config.unlocked():
        config.learning_rate_multipliers = {"backbone": 0.1}
    _config.check_keys(config)
    optimizer, _ = run.build_optimizer(config)
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
    optimizer, _ = run.build_optimizer(config)
    with pytest.raises(ValueError, match=r"names \['backbones'\], which match no trainable parameter"):
        optimizer.init(params)


@pytest.mark.parametrize(
    "assignment, match",
    [
        # ml_collections raised a TypeError for these, which the CLI did not catch.
        (
            "num_train_steps=abc",
            r"`config.num_train_steps` must be an integer, like its value in the config \(1000\). Received: 'abc'.",
        ),
        ("num_train_steps=1.5", r"`config.num_train_steps` must be an integer, .* Received: '1.5'."),
        ("num_train_steps=1e3", r"must be an integer, .* Received: '1e3'."),
        ("seed='3'", r"`config.seed` must be an integer, .* Received: \"'3'\"."),
        ("batch_size=True", r"`config.batch_size` must be an integer, .* Received: 'True'."),
        (
            "schedule_kwargs.base_learning_rate=fast",
            r"`config.schedule_kwargs.base_learning_rate` must be a number, like its value in the config \(0.003\). Received: 'fast'.",
        ),
        ("grad_clip_norm=none", r"`config.grad_clip_norm` must be a number, .* Received: 'none'."),
        ("debug_nans=yes", r"`config.debug_nans` must be true or false, .* Received: 'yes'."),
        ("model.num_filters=4", r"`config.model.num_filters` must be a sequence, .* Received: '4'."),
        (
            "frozen_parameters=backbone",
            r"`config.frozen_parameters` must be a sequence, e.g. .* Received: 'backbone'.",
        ),
        (
            "model=3",
            r"`config.model` is a group of keys \(in_channels, num_filters\): set one of them .* Received: '3'.",
        ),
    ],
)
def test_override_of_the_wrong_type_is_refused(config, assignment, match):
    with pytest.raises(ValueError, match=match):
        _config.apply_override(config, assignment)


def test_overrides_that_keep_the_type_are_parsed(config):
    _config.apply_override(config, "schedule_kwargs.base_learning_rate=inf")
    _config.apply_override(config, "debug_nans=True")
    _config.apply_override(config, "frozen_parameters=['backbone']")
    _config.apply_override(config, "ema_decay=0.999")  # None takes any literal
    _config.apply_override(config, "model={'in_channels': 3, 'num_filters': (4,)}")
    assert config.schedule_kwargs.base_learning_rate == float("inf") and config.debug_nans is True
    assert config.frozen_parameters == ("backbone",) and config.ema_decay == 0.999
    assert config.model.in_channels == 3 and tuple(config.model.num_filters) == (4,)


@pytest.mark.parametrize(
    "source, spec, error, match",
    [
        (
            "def get_config():\n    return {'seed': 0}\n",
            "",
            ValueError,
            r"`get_config\(\)` in '.*c.py' must return an `ml_collections.ConfigDict`. Received: dict.",
        ),
        (
            "def get_config():\n    pass\n",
            ":smoke",
            ValueError,
            r"`get_config` in '.*c.py' takes no argument, so `--config` must be FILE, without `:ARG`. Received: '.*c.py:smoke'.",
        ),
        (
            "def get_config(arg):\n    pass\n",
            "",
            ValueError,
            r"`get_config` in '.*c.py' takes an argument, so `--config` must be FILE:ARG. Received: '.*c.py'.",
        ),
        (
            "import ml_collections\ndef get_config():\n    return ml_collections.ConfigDict({'num_train_step': 1})\n",
            "",
            ValueError,
            r"Unknown config key\(s\) \['num_train_step'\]\..* Did you mean 'num_train_step' -> 'num_train_steps'\? Received",
        ),
    ],
)
def test_bad_config_files(tmp_path, source, spec, error, match):
    path = tmp_path / "c.py"
    path.write_text(source)
    with pytest.raises(error, match=match):
        _config.load_config(str(path) + spec)
