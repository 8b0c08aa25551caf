"""Mode 2 mechanics: what unfreezes, BatchNormalization, channels, sizes, precision, weights."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.models import build_model
import transferkit as tk
from transferkit import transfer
from transferkit.errors import ConfigError, WeightsError


def _trainable_layers(model: keras.Model) -> list[str]:
    return [l.name for l in transfer.base_layers(model) if l.trainable and l.weights]


@pytest.fixture(scope="module")
def small() -> keras.Model:
    return tk.create_model("mobilenet_v1_025", num_classes=3, input_shape=(64, 64, 3))


def test_unfreeze_from_stage_last_blocks_and_all(small: keras.Model) -> None:
    transfer.freeze(small, transfer.resolve_unfreeze(small, "stage5"))
    assert _trainable_layers(small) and all(n.startswith("stage5") for n in _trainable_layers(small))
    transfer.freeze(small, transfer.resolve_unfreeze(small, unfreeze_last=3))
    assert {n.split("_block")[0] + "_block" + n.split("_block")[1][0] for n in _trainable_layers(small)} == {
        "stage4_block6", "stage5_block1", "stage5_block2"
    }
    transfer.freeze(small, transfer.resolve_unfreeze(small, "all"))
    convs = [l for l in transfer.base_layers(small) if l.weights and not isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.trainable for l in convs)
    assert transfer.resolve_unfreeze(small) == "stage5"  # default: the last stage
    assert transfer.resolve_unfreeze(small, "stage4_block3_pw") == "stage4_block3_pw"
    with pytest.raises(ConfigError, match="stages: stem, stage1"):
        transfer.resolve_unfreeze(small, "stage9")


def test_gradual_schedule(small: keras.Model) -> None:
    assert transfer.unfreeze_schedule(small, "stage3", 10, every=0) == [("stage3", 10)]
    assert transfer.unfreeze_schedule(small, "stage3", 10, every=2) == [("stage5", 2), ("stage4", 2), ("stage3", 6)]
    assert transfer.unfreeze_schedule(small, "stage4", 3, every=2) == [("stage5", 2), ("stage4", 1)]
    plan = transfer.unfreeze_schedule(small, "all", 12, every=2)
    assert [s for s, _ in plan] == ["stage5", "stage4", "stage3", "stage2", "stage1", "stem"]
    assert sum(n for _, n in plan) == 12


def _bn_stats(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {
        l.name: [np.array(v) for v in (l.moving_mean, l.moving_variance)]
        for l in model.layers
        if isinstance(l, keras.layers.BatchNormalization)
    }


@pytest.mark.parametrize("train_bn", [False, True])
def test_batchnorm_moving_statistics(train_bn: bool) -> None:
    keras.utils.set_random_seed(0)
    model = tk.create_model("mobilenet_v1_025", num_classes=2, input_shape=(64, 64, 3))
    transfer.freeze(model, "stage5", train_bn=train_bn)
    before = _bn_stats(model)
    model.compile(optimizer=transfer.make_optimizer("adam", 1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (16, 64, 64, 3)).astype("float32")
    model.fit(x, np.arange(16) % 2, epochs=2, batch_size=8, verbose=0)
    after = _bn_stats(model)
    changed = {n for n in before if not all(np.array_equal(a, b) for a, b in zip(before[n], after[n]))}
    if train_bn:
        assert changed == {n for n in before if n.startswith("stage5")}
    else:
        assert changed == set()


def test_first_conv_of_a_grey_model_sums_rgb_kernels(keras_home: Path) -> None:
    rgb = build_model("mobilenet_v1_025", 2, "imagenet", 96)
    grey = build_model("mobilenet_v1_025", 2, "imagenet", 96, channels=1)
    assert grey.input_shape == (None, 96, 96, 1)
    k3 = rgb.get_layer("stem_conv").get_weights()[0]
    k1 = grey.get_layer("stem_conv").get_weights()[0]
    assert k1.shape == k3.shape[:2] + (1,) + k3.shape[3:]
    np.testing.assert_array_equal(k1, k3.sum(axis=2, keepdims=True))
    np.testing.assert_array_equal(grey.get_layer("stage3_block1_dw").get_weights()[0], rgb.get_layer("stage3_block1_dw").get_weights()[0])
    g = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 1)).astype("float32")
    extractor_rgb, _ = transfer.split_head(rgb)
    extractor_grey, _ = transfer.split_head(grey)
    np.testing.assert_allclose(
        extractor_grey.predict(g, verbose=0), extractor_rgb.predict(np.repeat(g, 3, axis=-1), verbose=0), rtol=1e-4, atol=1e-4
    )


def test_pretrained_base_at_another_size(keras_home: Path) -> None:
    model = build_model("mobilenet_v1_025", 2, "imagenet", 160)
    reference = build_model("mobilenet_v1_025", 2, "imagenet", 224)
    np.testing.assert_array_equal(model.get_layer("stage5_block2_pw").get_weights()[0], reference.get_layer("stage5_block2_pw").get_weights()[0])
    assert model.predict(np.zeros((1, 160, 160, 3), "float32"), verbose=0).shape == (1, 2)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_a_float32_softmax(policy: str) -> None:
    with transfer.precision(policy):
        model = build_model("mobilenet_v1_025", 2, None, 64)
        transfer.freeze(model, "stage5")
        model.compile(optimizer=transfer.make_optimizer("adam", 1e-3, 0.1), loss="sparse_categorical_crossentropy")
        model.fit(np.zeros((4, 64, 64, 3), "float32"), np.array([0, 1, 0, 1]), verbose=0)
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("stage5_block1_pw").compute_dtype == policy.split("_")[1]
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    with pytest.raises(ConfigError, match="mixed_float16"):
        transfer.check_precision("float8")


def test_imagenet_for_a_family_without_published_weights() -> None:
    no_weights = [n for n in tk.list_models() if not tk.list_models(n, pretrained=True)]
    if not no_weights:
        pytest.skip("every registered model has published weights")
    with pytest.raises(WeightsError, match=r"models with published weights: .*mobilenet_v1_025.*pass a weights file path"):
        build_model(no_weights[0], 2, "imagenet")


def test_user_files_load_and_a_misfit_names_the_layer(tmp_path: Path, keras_home: Path) -> None:
    trained = build_model("mobilenet_v1_025", 5, "imagenet", 96)
    keras_file = tmp_path / "run.keras"
    trained.save(keras_file)
    weights_file = tmp_path / "base.weights.h5"
    backbone = tk.create_backbone("mobilenet_v1_025", "imagenet", (96, 96, 3))
    backbone.save_weights(weights_file)
    for path in (keras_file, weights_file):
        model = build_model("mobilenet_v1_025", 2, str(path), 96)  # new head, 2 classes
        np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], trained.get_layer("stem_conv").get_weights()[0])
        assert model.output_shape == (None, 2)
    wide = tk.create_model("mobilenet_v1_050", 2, input_shape=(96, 96, 3))
    wide_file = tmp_path / "wide.keras"
    wide.save(wide_file)
    with pytest.raises(WeightsError, match="stem_conv"):
        build_model("mobilenet_v1_025", 2, str(wide_file), 96)


def _one_per_family() -> list[str]:
    seen: dict[str, str] = {}
    for name in tk.list_models():
        seen.setdefault(tk.get_model_info(name).family, name)
    return sorted(seen.values())


@pytest.mark.parametrize("name", _one_per_family())
def test_every_family_transfers_from_scratch(name: str) -> None:
    info = tk.get_model_info(name)
    size = info.input_shape[0] if info.fixed_input else info.min_size
    model = build_model(name, 3, None, size)
    target = transfer.resolve_unfreeze(model)
    transfer.freeze(model, target)
    head = [l for l in model.layers if l.name == "predictions"][0]
    assert head.trainable
    trainable_base = _trainable_layers(model)
    frozen_base = [l.name for l in transfer.base_layers(model) if l.weights and not l.trainable]
    assert trainable_base and frozen_base, (target, trainable_base[:3])
    extractor, head_model = transfer.split_head(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, info.input_shape[2])).astype("float32")
    np.testing.assert_allclose(head_model(extractor(x)), model(x), rtol=1e-5, atol=1e-6)


def test_finetune_command_with_every_unfreezing_option(hymenoptera: Path, tmp_path: Path, keras_home: Path) -> None:
    import csv
    import json
    import shutil

    from transferkit.cli import main

    data = tmp_path / "few"
    for cls in ("ants", "bees"):
        (data / cls).mkdir(parents=True)
        for f in sorted((hymenoptera / cls).iterdir())[:5]:
            shutil.copy(f, data / cls / f.name)
    out = tmp_path / "run"
    code = main([
        "finetune", "--data", str(data), "--out", str(out), "--image-size", "64", "--epochs", "1",
        "--fine-tune-epochs", "3", "--unfreeze-from", "stage4", "--gradual", "1", "--lr-mult", "stage4=0.1",
        "--optimizer", "sgd", "--channels", "1", "--mixed-precision", "mixed_bfloat16", "--quiet", "--val-split", "0.4",
    ])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["gradual"] == 1 and config["channels"] == 1 and config["mode"] == "finetune"
    with open(out / "history.csv") as f:
        assert [r["phase"] for r in csv.DictReader(f)] == ["head", "fine_tune", "fine_tune", "fine_tune"]
    saved = keras.saving.load_model(out / "model.keras")
    assert saved.input_shape == (None, 64, 64, 1) and saved.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
