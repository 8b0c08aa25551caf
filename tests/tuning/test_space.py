"""The search space as data: presets, validation against the family, and built architectures
that follow the sampled values (no training here)."""

from __future__ import annotations

import keras
import keras_tuner
import pytest

from transferkit import tuning
from transferkit.errors import ConfigError


def _build(base: str, space: dict, values: dict, **kwargs) -> keras.Model:
    """The model the hypermodel builds for given values (declared first, then set)."""
    hypermodel = tuning.TransferHyperModel(base, 3, space, (32, 32, 3), **kwargs)
    hp = keras_tuner.HyperParameters()
    for key, spec in space.items():
        tuning.declare(hp, key, spec)
    hp.values.update(values)
    return hypermodel.build(hp)


@pytest.mark.parametrize(
    "base, keys",
    [
        ("wrn_16_2", {"depth", "width", "block_dropout", "lr"}),
        ("resnet20", {"depth", "lr"}),
        ("mobilenet_v1_025", {"alpha", "dropout", "lr"}),
    ],
)
def test_default_presets_per_family_are_valid(base: str, keys: set) -> None:
    space = tuning.preset_space("default", base)
    assert set(space) == keys
    tuning.check_space(base, space)


def test_head_preset_fits_any_family_and_pretrained_weights() -> None:
    space = tuning.preset_space("head", "vgg16")
    assert set(space) == {"dropout", "hidden_units", "lr"}
    tuning.check_space("mobilenet_v1_025", space, weights="imagenet")


def test_space_specs_map_to_keras_tuner_types() -> None:
    hp = keras_tuner.HyperParameters()
    tuning.declare(hp, "width", [1, 2, 4])
    tuning.declare(hp, "depth", {"min": 10, "max": 22, "step": 6})
    tuning.declare(hp, "dropout", {"min": 0.0, "max": 0.5, "step": 0.1})
    tuning.declare(hp, "lr", {"min": 1e-4, "max": 1e-2, "sampling": "log"})
    tuning.declare(hp, "pooling", "max")
    kinds = {h.name: type(h).__name__ for h in hp.space}
    assert kinds == {"width": "Choice", "depth": "Int", "dropout": "Float", "lr": "Float", "pooling": "Fixed"}
    assert hp.space[3].sampling == "log"


def test_wrn_width_and_depth_choose_the_registry_name() -> None:
    name, kwargs = tuning.model_arguments(
        "wrn_16_2", {"depth": 22, "width": 4, "block_dropout": 0.3, "dropout": 0.2, "lr": 0.01}
    )
    assert name == "wrn_22_4"
    assert kwargs == {"block_dropout": 0.3, "dropout": 0.2}


@pytest.mark.parametrize("width", [1, 4])
def test_wrn_width_sets_filter_counts(width: int) -> None:
    space = {"width": [1, 4], "depth": [10, 16]}
    model = _build("wrn_16_2", space, {"width": width, "depth": 10})
    assert model.name == f"wrn_10_{width}"
    assert model.get_layer("stage1_block1_conv1").filters == 16 * width
    assert model.get_layer("stage3_block1_conv1").filters == 64 * width


def test_wrn_depth_sets_blocks_per_stage() -> None:
    model = _build("wrn_16_2", {"depth": [10, 16]}, {"depth": 16})
    names = {layer.name for layer in model.layers}
    assert "stage1_block2_conv1" in names and "stage1_block3_conv1" not in names  # (16-4)/6 = 2


def test_dropouts_reach_block_and_head() -> None:
    space = {"block_dropout": {"min": 0.0, "max": 0.5}, "dropout": [0.1, 0.4]}
    model = _build("wrn_10_1", space, {"block_dropout": 0.3, "dropout": 0.4})
    assert model.get_layer("stage1_block1_conv1_dropout").rate == pytest.approx(0.3)
    assert model.get_layer("head_dropout").rate == pytest.approx(0.4)


def test_resnet_depth_and_mobilenet_alpha_are_builder_overrides() -> None:
    resnet = _build("resnet20", {"depth": [20, 32]}, {"depth": 32})
    names = {layer.name for layer in resnet.layers}
    assert "stage1_block5_conv1" in names and "stage1_block6_conv1" not in names  # (32-2)/6 = 5
    mobilenet = _build("mobilenet_v1_100", {"alpha": [0.25, 0.5]}, {"alpha": 0.5})
    assert mobilenet.get_layer("stem_conv").filters == 16


def test_lr_and_optimizer_reach_the_compiled_model() -> None:
    model = _build("wrn_10_1", {"lr": [0.05], "optimizer": ["sgd"]}, {})
    assert type(model.optimizer).__name__ == "SGD"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_base_key_chooses_among_registry_names() -> None:
    assert tuning.model_arguments("resnet20", {"base": "resnet32"})[0] == "resnet32"
    tuning.check_space("mobilenet_v1_025", {"base": ["mobilenet_v1_025", "mobilenet_v1_050"]}, "imagenet")


@pytest.mark.parametrize(
    "base, space, message",
    [
        ("wrn_16_2", {"alpha": [0.5, 1.0]}, "has no hyperparameter 'alpha'; valid: .*width"),
        ("mobilenet_v1_025", {"width": [1, 2]}, "has no hyperparameter 'width'; valid: .*alpha"),
        ("wrn_16_2", {"depth": [10, 12]}, "depth must be 6n\\+4"),
        ("resnet20", {"base": ["resnet20", "nosuchnet"]}, "unknown model 'nosuchnet'"),
        ("wrn_16_2", {"width": []}, "at least one value"),
        ("wrn_16_2", {"width": {"min": 1}}, "a range is"),
        ("wrn_16_2", {"width": {"min": 4, "max": 1}}, "greater than the max_value"),
        ("wrn_16_2", {"lr": {"min": 0.0, "max": 0.1, "sampling": "log"}}, "does not support"),
        ("wrn_16_2", {"lr": {"min": 0.1, "max": 0.2, "sampling": "cubic"}}, "sampling must be one of"),
        ("wrn_16_2", {"dropout": [0.2, 1.0]}, "\\[0, 1\\)"),
        ("wrn_16_2", {"pooling": ["avg", "sum"]}, "pooling"),
        ("wrn_16_2", {"optimizer": ["adam", "lion9"]}, "unknown optimizer"),
        ("wrn_16_2", {"width": [1, "2"]}, "search space 'width'"),
        ("wrn_16_2", {}, "non-empty mapping"),
    ],
)
def test_bad_spaces_are_refused_before_anything_runs(base: str, space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tuning.check_space(base, space)


def test_architecture_keys_with_pretrained_weights_are_refused() -> None:
    with pytest.raises(ConfigError, match="changes its architecture \\(alpha\\).*--space-preset head"):
        tuning.check_space("mobilenet_v1_025", {"alpha": [0.25, 0.5]}, "imagenet")


def test_unknown_preset_and_family_without_default() -> None:
    with pytest.raises(ConfigError, match="unknown space preset 'huge'; valid: default, head"):
        tuning.preset_space("huge", "wrn_16_2")
    with pytest.raises(ConfigError, match="no space for vgg.*--space-preset head"):
        tuning.preset_space("default", "vgg16")


def test_distributed_role_reads_keras_tuner_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert tuning.distributed_role() is None
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID"):
        tuning.distributed_role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert tuning.distributed_role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner1")
    assert tuning.distributed_role() == "tuner1"
