"""Mode 2 mechanics: what unfreezes, BatchNormalization, channels, sizes, precision, weights."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.models import build_model
import transferkit as tk
from transferkit import transfer
from transferkit.data import SAMPLE_DIR, load_data
from transferkit.data.options import DataOptions
from transferkit.errors import ConfigError, WeightsError
from transferkit.runs.finetune import FinetuneConfig, finetune
from random_init import random_init
from tuning.conftest import make_images


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


def test_grey_model_sees_a_grey_image_as_the_rgb_model_sees_it_in_three_channels() -> None:
    rgb = build_model("mobilenet_v1_025", 2, "imagenet", 96)  # the bundled ImageNet weights
    grey = build_model("mobilenet_v1_025", 2, "imagenet", 96, channels=1)
    assert grey.input_shape == (None, 96, 96, 1)
    k3 = rgb.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(grey.get_layer("stem_conv").get_weights()[0], k3.sum(axis=2, keepdims=True))
    grey.get_layer("predictions").set_weights(rgb.get_layer("predictions").get_weights())  # the same new head
    g = np.random.default_rng(0).uniform(0, 255, (4, 96, 96, 1)).astype("float32")
    expected = rgb.predict(np.repeat(g, 3, axis=-1), verbose=0)
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-3  # the images get different outputs
    np.testing.assert_allclose(grey.predict(g, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_pretrained_base_at_another_size() -> None:
    model = build_model("mobilenet_v1_025", 2, "imagenet", 160)
    reference = build_model("mobilenet_v1_025", 2, "imagenet", 224)
    np.testing.assert_array_equal(model.get_layer("stage5_block2_pw").get_weights()[0], reference.get_layer("stage5_block2_pw").get_weights()[0])
    assert model.predict(np.zeros((1, 160, 160, 3), "float32"), verbose=0).shape == (1, 2)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_and_keeps_a_float32_softmax(policy: str) -> None:
    half = policy.split("_")[1]
    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    with transfer.precision(policy):
        model = build_model("mobilenet_v1_025", 2, "imagenet", 64)  # random init: features too small to move
        transfer.freeze(model, "stage5")
        model.compile(optimizer=transfer.make_optimizer("adam", 1e-3, 0.1), loss="sparse_categorical_crossentropy")
        before = {v.path: v.numpy().copy() for v in model.weights}
        model.fit(x, np.array([0, 1, 0, 1]), batch_size=4, epochs=6, verbose=0)
    assert keras.config.dtype_policy().name == "float32"
    conv = model.get_layer("stage5_block1_pw")
    assert conv.kernel.dtype == "float32"  # float32 variables ...
    assert keras.Model(model.input, conv.output)(x).dtype == half  # ... computing in half precision
    probabilities = model(x)
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(keras.ops.sum(probabilities, axis=-1), 1.0, rtol=1e-6)
    if policy == "mixed_float16":  # float16 gradients need loss scaling; bfloat16 ones do not
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    else:
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # A loss-scaled step whose gradients overflow is skipped (the scale then halves); some are not.
    assert 1 <= int(model.optimizer.iterations) <= 6
    after = {v.path: v.numpy() for v in model.weights}
    assert all(after[p].dtype == np.float32 for p in after)
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    assert "stage5_block1_pw/kernel" in changed and "predictions/kernel" in changed
    assert not any(p.startswith(("stem", "stage4")) for p in changed)
    with pytest.raises(ConfigError, match="mixed_float16"):
        transfer.check_precision("float8")


class _RecordTraining(keras.callbacks.Callback):
    """The trainable weights of each ``fit``, its optimizer, and the weights that training changed."""

    def __init__(self) -> None:
        super().__init__()
        self.trainable: list[set[str]] = []
        self.changed: list[set[str]] = []
        self.optimizers: list[str] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.trainable.append({v.path for v in self.model.trainable_weights})
        self.optimizers.append(type(self.model.optimizer).__name__)
        self._before = {v.path: v.numpy().copy() for v in self.model.weights}

    def on_train_end(self, logs: dict | None = None) -> None:
        self.changed.append({v.path for v in self.model.weights if not np.array_equal(v.numpy(), self._before[v.path])})


def test_gradual_unfreezing_trains_one_more_stage_each_step(tmp_path: Path) -> None:
    record = _RecordTraining()
    config = FinetuneConfig(
        base="resnet20", weights=random_init(tmp_path / "init.weights.h5"), data=str(make_images(tmp_path / "images")),
        out=str(tmp_path / "run"),
        image_size=32, batch_size=8, epochs=1, fine_tune_epochs=3, gradual=1, unfreeze_from="stage1",
        augment=False, val_split=0.25, optimizer="rmsprop",
    )
    finetune(config, verbose=0, callbacks=[record])
    assert record.optimizers == ["RMSprop"] * 4  # --optimizer trains the head too, not only phase 2
    reference = build_model("resnet20", 2, None, 32)

    def weights_of(stages: list[str]) -> set[str]:  # BatchNormalization stays frozen by default
        return {
            v.path
            for layer in reference.layers
            if layer.name.startswith(("head", "predictions"))
            or (layer.name.split("_")[0] in stages and not isinstance(layer, keras.layers.BatchNormalization))
            for v in layer.trainable_weights
        }

    stages = sorted({l.name.split("_")[0] for l in reference.layers if l.name.startswith("stage")}, reverse=True)
    assert stages == ["stage3", "stage2", "stage1"]
    expected = [weights_of(stages[:n]) for n in range(len(stages) + 1)]  # the head alone, then one stage more each epoch
    assert record.trainable == expected
    assert record.changed == expected  # every trainable weight moved, no other one did


def test_class_weights_reweigh_each_example_of_the_training_loss(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", per_class=8)
    for f in sorted((images / "blue").iterdir())[:5]:
        f.unlink()  # 8 red, 3 blue

    def first_batch_loss(class_weight: str | None) -> float:
        config = FinetuneConfig(
            base="resnet20", weights=random_init(tmp_path / "init.weights.h5"), data=str(images),
            out=str(tmp_path / f"run_{class_weight}"),
            image_size=32, batch_size=32, epochs=1, fine_tune_epochs=0, augment=False, val_split=0.25, dropout=0.0,
            data_options=DataOptions(class_weight=class_weight),
        )
        return finetune(config, verbose=0).history[0]["loss"]  # one batch: the loss before its step

    weighted, plain = first_batch_loss("auto"), first_batch_loss(None)

    # The same initial model and training images, per-example cross-entropy computed here.
    data = load_data(str(images), 32, 32, 0.25, 0, False)
    keras.utils.set_random_seed(0)
    model = build_model("resnet20", 2, None, 32, dropout=0.0)
    x, y = (np.concatenate(parts) for parts in zip(*((np.asarray(a), np.asarray(b)) for a, b in data.train)))
    losses = -np.log(model.predict(x, verbose=0)[np.arange(len(y)), y])
    counts = np.bincount(y, minlength=2)
    assert counts.tolist() == [2, 6]  # blue (label 0) is the rare class
    balanced = len(y) / (2 * counts)  # n / (classes * n_class)
    np.testing.assert_allclose(plain, losses.mean(), rtol=1e-4)
    np.testing.assert_allclose(weighted, (balanced[y] * losses).mean(), rtol=1e-4)
    assert abs(weighted - plain) > 1e-3
    np.testing.assert_allclose(weighted - plain, ((balanced[y] - 1) * losses).mean(), rtol=1e-3, atol=1e-6)


def test_imagenet_for_a_family_without_published_weights() -> None:
    no_weights = [n for n in tk.list_models() if not tk.list_models(n, pretrained=True)]
    if not no_weights:
        pytest.skip("every registered model has published weights")
    with pytest.raises(WeightsError, match=r"models with published weights: .*mobilenet_v1_025.*pass a weights file path"):
        build_model(no_weights[0], 2, "imagenet")


def test_user_files_load_and_a_misfit_names_the_layer(tmp_path: Path) -> None:
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


def test_finetune_command_with_every_unfreezing_option(tmp_path: Path) -> None:
    import csv
    import shutil

    from transferkit.cli import main

    data = tmp_path / "few"
    for cls in ("ants", "bees"):
        (data / cls).mkdir(parents=True)
        for f in sorted((SAMPLE_DIR / cls).iterdir())[:5]:
            shutil.copy(f, data / cls / f.name)
    out = tmp_path / "run"
    code = main([
        "finetune", "--data", str(data), "--out", str(out), "--image-size", "64", "--epochs", "1",
        "--fine-tune-epochs", "3", "--unfreeze-from", "stage4", "--gradual", "1", "--lr-mult", "stage4=0.1",
        "--optimizer", "sgd", "--channels", "1", "--mixed-precision", "mixed_bfloat16", "--quiet", "--val-split", "0.4",
    ])
    assert code == 0
    with open(out / "history.csv") as f:
        assert [r["phase"] for r in csv.DictReader(f)] == ["head", "fine_tune", "fine_tune", "fine_tune"]
    saved = keras.saving.load_model(out / "model.keras")
    assert saved.input_shape == (None, 64, 64, 1) and saved.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
    pretrained = build_model("mobilenet_v1_025", 2, "imagenet", 64, channels=1)
    for name in ("stem_conv", "stage3_block2_pw"):  # frozen: the grey-adapted ImageNet weights
        np.testing.assert_array_equal(saved.get_layer(name).get_weights()[0], pretrained.get_layer(name).get_weights()[0])
    assert not np.array_equal(saved.get_layer("predictions").get_weights()[0], pretrained.get_layer("predictions").get_weights()[0])
