"""Run configuration: recipes per stage, YAML differences, serialisation, the --conv_type map."""

from __future__ import annotations

import dataclasses
import json

import pytest

from axcnn.config import (CONV_TYPES, DEFAULT_RECIPE, EXACT_RECIPES, OptimConfig, Retrain, RunConfig,
                          Stage, config_diff, load_yaml_overrides, resolve_config, stage_recipe)
from axcnn.errors import ConfigError


def test_stage_and_retrain_parse():
    assert Stage.parse("Quantized") is Stage.QUANTIZED
    assert Stage.parse(Stage.STATS) is Stage.STATS
    assert Retrain.parse("error-aware") is Retrain.ERROR_AWARE
    assert Retrain.parse("STE") is Retrain.STE
    with pytest.raises(ConfigError, match="unknown stage"):
        Stage.parse("approx")
    with pytest.raises(ConfigError, match="unknown retraining"):
        Retrain.parse("sgd")


def test_conv_types_mapping():
    assert CONV_TYPES == {
        1: (Stage.EXACT, Retrain.NONE),
        2: (Stage.QUANTIZED, Retrain.NONE),
        3: (Stage.APPROXIMATE, Retrain.STE),
        4: (Stage.APPROXIMATE, Retrain.ERROR_AWARE),
        5: (Stage.STATS, Retrain.NONE),
    }


# --- recipes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", sorted(EXACT_RECIPES))
def test_exact_stage_uses_the_seed_recipe(model):
    cfg = resolve_config(model, "cifar10", Stage.EXACT)
    assert cfg.optim == EXACT_RECIPES[model]
    assert cfg.optim.optimizer == "sgd"


def test_exact_recipe_values():
    r20 = EXACT_RECIPES["resnet20"]
    assert (r20.lr, r20.milestones, r20.epochs, r20.batch_size, r20.schedule) == (0.1, (30, 60), 100, 64, "multistep")
    lenet = EXACT_RECIPES["lenet5"]
    assert (lenet.lr, lenet.step_size, lenet.gamma, lenet.epochs, lenet.weight_decay) == (0.01, 10, 0.5, 20, 5e-4)
    assert resolve_config("mystery", "cifar10", Stage.EXACT).optim == DEFAULT_RECIPE


@pytest.mark.parametrize("bits,lr", [(8, 1e-4), (4, 1e-3), (6, 1e-4)])
def test_quantized_recipe(bits, lr):
    cfg = resolve_config("resnet20", "cifar10", Stage.QUANTIZED, bits=bits)
    o = cfg.optim
    assert (o.optimizer, o.epochs, o.schedule, o.step_size, o.gamma) == ("adam", 5, "step", 10, 0.5)
    assert o.lr == pytest.approx(lr)
    assert o.batch_size == EXACT_RECIPES["resnet20"].batch_size
    assert cfg.bits == bits


@pytest.mark.parametrize("retrain,epochs", [(Retrain.NONE, 0), (Retrain.STE, 3), (Retrain.ERROR_AWARE, 3)])
def test_approximate_recipe(retrain, epochs):
    cfg = resolve_config("vgg16", "cifar10", Stage.APPROXIMATE, bits=4, retrain=retrain, lut="builtin:drum4")
    assert cfg.optim.epochs == epochs
    assert cfg.optim.optimizer == "adam" and cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.batch_size == 128
    assert cfg.retrain is retrain


def test_stats_stage_does_not_train():
    assert stage_recipe("resnet8", Stage.STATS, 8, Retrain.STE).epochs == 0


# --- YAML differences and overrides -------------------------------------------------------------

def test_yaml_overrides_only_change_what_they_name(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("seed: 3\noptim:\n  lr: 0.5\n  milestones: [5, 7]\n")
    over = load_yaml_overrides(p)
    assert over == {"seed": 3, "optim": {"lr": 0.5, "milestones": [5, 7]}}
    base = resolve_config("resnet20", "cifar10", Stage.EXACT)
    cfg = resolve_config("resnet20", "cifar10", Stage.EXACT, yaml_overrides=over)
    assert cfg.seed == 3 and cfg.optim.lr == 0.5 and cfg.optim.milestones == (5, 7)
    assert config_diff(base, cfg) == ["optim.lr: 0.1 vs 0.5", "optim.milestones: [30, 60] vs [5, 7]",
                                      "seed: 42 vs 3"]


def test_yaml_bits_select_the_recipe(tmp_path):
    p = tmp_path / "q4.yaml"
    p.write_text("bits: 4\n")
    cfg = resolve_config("resnet20", "cifar10", Stage.QUANTIZED, yaml_overrides=load_yaml_overrides(p))
    assert cfg.bits == 4 and cfg.optim.lr == pytest.approx(1e-3)


def test_yaml_stage_and_retrain_strings(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("stage: approximate\nretrain: error-aware\nlut: builtin:mitchell\n")
    cfg = resolve_config("resnet8", "cifar10", Stage.EXACT, yaml_overrides=load_yaml_overrides(p))
    assert cfg.stage is Stage.APPROXIMATE and cfg.retrain is Retrain.ERROR_AWARE
    assert cfg.lut == "builtin:mitchell" and cfg.optim.epochs == 3


def test_explicit_overrides_beat_yaml_and_none_is_ignored():
    over = {"seed": 1, "optim": {"lr": 0.3, "epochs": 9}}
    cfg = resolve_config("lenet5", "fashion_mnist", Stage.EXACT, yaml_overrides=over, seed=7,
                         optim_overrides={"lr": 0.2, "epochs": None})
    assert cfg.seed == 7 and cfg.optim.lr == 0.2 and cfg.optim.epochs == 9
    cfg = resolve_config("lenet5", "fashion_mnist", Stage.EXACT, yaml_overrides=over, seed=None)
    assert cfg.seed == 1


def test_empty_yaml_is_no_difference(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing\n")
    assert load_yaml_overrides(p) == {}


@pytest.mark.parametrize("text,match", [
    ("bogus: 1\n", "unknown key"),
    ("seed: 1\nlearning_rate: 0.1\n", "learning_rate"),
    ("optim:\n  lr: 0.1\n  nesterov: true\n", "nesterov"),
    ("- seed\n- 1\n", "mapping"),
    ("seed: [1\n", "not valid YAML"),
])
def test_bad_yaml(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_yaml_overrides(p)


def test_missing_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml_overrides(tmp_path / "nope.yaml")


def test_bad_values_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="bits"):
        resolve_config("resnet20", "cifar10", Stage.QUANTIZED, bits=9)
    with pytest.raises(ConfigError, match="LUT"):
        resolve_config("resnet20", "cifar10", Stage.APPROXIMATE)
    with pytest.raises(ConfigError):
        resolve_config("resnet20", "cifar10", Stage.EXACT, yaml_overrides={"optim": {"optimizer": "rmsprop"}})
    with pytest.raises(ConfigError):
        resolve_config("resnet20", "cifar10", Stage.EXACT, keep_first="approximate")
    with pytest.raises(ConfigError):
        resolve_config("resnet20", "cifar10", "final")


def test_unknown_override_key_is_a_config_error():
    with pytest.raises(ConfigError, match="bogus"):
        resolve_config("resnet20", "cifar10", Stage.EXACT, yaml_overrides={"bogus": 1})
    with pytest.raises(ConfigError, match="optim.momentumm"):
        resolve_config("resnet20", "cifar10", Stage.EXACT, optim_overrides={"momentumm": 1})


@pytest.mark.parametrize("kwargs", [
    dict(optimizer="rmsprop"), dict(schedule="cosine"), dict(epochs=-1), dict(batch_size=0), dict(lr=0.0),
])
def test_optim_config_validation(kwargs):
    with pytest.raises(ConfigError):
        OptimConfig(**kwargs)


def test_configs_are_frozen():
    cfg = resolve_config("resnet20", "cifar10", Stage.EXACT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0


# --- serialisation -------------------------------------------------------------------------------

@pytest.mark.parametrize("stage,kw", [
    (Stage.EXACT, {}),
    (Stage.QUANTIZED, dict(bits=4, per_channel=True, signed=True, keep_first="exact")),
    (Stage.APPROXIMATE, dict(lut="builtin:drum4@8u", retrain=Retrain.ERROR_AWARE, window=3,
                             exact_accuracy=91.5, include_linear=True, train_subset=100)),
    (Stage.STATS, dict(lut="luts/x.npy")),
])
def test_to_dict_from_dict_round_trip(stage, kw):
    cfg = resolve_config("resnet20", "cifar10", stage, **kw)
    d = cfg.to_dict()
    assert d["stage"] == stage.value and isinstance(d["optim"]["milestones"], list)
    text = json.dumps(d)   # JSON-ready
    back = RunConfig.from_dict(json.loads(text))
    assert back == cfg
    assert config_diff(back, cfg) == []


def test_config_diff():
    a = resolve_config("resnet20", "cifar10", Stage.QUANTIZED, bits=8)
    b = resolve_config("resnet20", "cifar10", Stage.QUANTIZED, bits=4, seed=1)
    diff = config_diff(a, b)
    assert diff == ["bits: 8 vs 4", "optim.lr: 0.0001 vs 0.001", "seed: 42 vs 1"]
    assert config_diff(a, a) == []
    c = resolve_config("resnet8", "cifar10", Stage.QUANTIZED)
    assert config_diff(a, c) == ["model: 'resnet20' vs 'resnet8'"]


def test_no_retraining_never_trains_and_window_only_counts_for_error_aware():
    from axcnn.config import Retrain, Stage, resolve_config
    from axcnn.train.pipeline import run_name

    none = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                          retrain=Retrain.NONE, optim_overrides={"epochs": 3}, window=16)
    assert none.optim.epochs == 0 and none.window == 2
    ste = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                         retrain=Retrain.STE, optim_overrides={"epochs": 3}, window=16)
    assert ste.optim.epochs == 3 and ste.window == 2
    exact = resolve_config("lenet5", "synthetic", Stage.EXACT, window=16)
    assert exact.window == 2
    ea = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                        retrain=Retrain.ERROR_AWARE, window=16)
    ea2 = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                         retrain=Retrain.ERROR_AWARE)
    assert ea.window == 16 and run_name(ea).endswith("-error_aware-w16")
    assert run_name(ea2).endswith("-error_aware")


def test_tag_names_approximate_runs_apart_and_leaves_references_shared():
    from axcnn.config import Retrain, Stage, resolve_config
    from axcnn.train.pipeline import run_name

    ste = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                         retrain=Retrain.STE, tag="e10")
    plain = dataclasses.replace(ste, tag=None)
    assert run_name(ste) == run_name(plain) + "-e10"
    assert config_diff(plain, ste) == ["tag: None vs 'e10'"]
    for stage in (Stage.EXACT, Stage.QUANTIZED):
        ref = resolve_config("lenet5", "synthetic", stage, tag="e10")
        assert ref.tag is None and ref == resolve_config("lenet5", "synthetic", stage)
    # a config written before tags existed reads back as untagged
    old = plain.to_dict()
    del old["tag"]
    assert RunConfig.from_dict(old) == plain
    with pytest.raises(ConfigError, match="tag must be"):
        resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6", tag="../x")


def test_post_calibration_only_for_approximate_runs_and_named():
    from axcnn.config import Retrain, Stage, resolve_config
    from axcnn.train.pipeline import run_name

    cfg = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                         retrain=Retrain.NONE, post_calibration=True)
    assert cfg.post_calibration and run_name(cfg).endswith("-noretrain-postcal")
    both = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:trunc6",
                          retrain=Retrain.NONE, post_calibration=True, bn_calibration=True)
    assert run_name(both).endswith("-noretrain-postcal-bncal")
    ref = resolve_config("lenet5", "synthetic", Stage.QUANTIZED, post_calibration=True,
                         bn_calibration=True)
    assert not ref.post_calibration and not ref.bn_calibration
    assert ref == resolve_config("lenet5", "synthetic", Stage.QUANTIZED)
