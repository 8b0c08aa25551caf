"""Likely label errors by confident learning on a frozen pretrained base's features.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels"
(JAIR 2021). A linear probe (scikit-learn's LogisticRegression on standardised features) gives
every image out-of-fold class probabilities (stratified k-fold ``cross_val_predict``: no image is
scored by a probe that saw it). Each class's threshold is its mean self-confidence (the mean
probability of the class over the images labelled with it); an image is a likely label error when
another class's probability reaches that class's threshold and beats its given class's. Its
suggested class is the likeliest such class; its score the margin between the two probabilities.

The features are those of ``extract`` (:mod:`transferkit.transfer.features`): computed once per
image, cached on disk under the same key, so a dataset ``extract`` or an earlier check has seen
costs no pass of the base at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError, WeightsError

DEFAULT_BASE = "mobilenet_v1_025"
DEFAULT_FOLDS = 5
# Inverse regularisation of the probe: on 245 hymenoptera photos with 12 labels flipped, C=0.01
# found as many planted errors as C=0.1 and 1.0 with half to a third of their false alarms.
PROBE_C = 0.01
# Cosine similarity of two images' pooled features (224 px) above which they are near-duplicates:
# copies of the hymenoptera photos cropped by 5% a side measure 0.93 and up (10%: 0.90 and up,
# most above this), distinct photos there 0.88 at most. Crop-robust where the pHash is not.
NEAR_DUPLICATE_COSINE = 0.92


def confident_learning(probs: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confident learning's label-issue rule on out-of-fold probabilities.

    Args:
        probs: ``(n, classes)`` out-of-fold predicted probabilities.
        labels: Given label of each row.

    Returns:
        ``(flagged, suggested, score)``: a boolean per row, the suggested class of each flagged
        row (its given label otherwise) and the margin ``p[suggested] - p[given]`` (0 otherwise).
    """
    probs = np.asarray(probs, np.float64)
    y = np.asarray(labels)
    rows = np.arange(len(y))
    thresholds = np.array([probs[y == k, k].mean() if np.any(y == k) else np.inf for k in range(probs.shape[1])])
    given = probs[rows, y]
    confident = (probs >= thresholds) & (probs > given[:, None])
    confident[rows, y] = False
    flagged = confident.any(axis=1)
    suggested = np.where(flagged, np.where(confident, probs, -1.0).argmax(axis=1), y)
    score = np.where(flagged, probs[rows, suggested] - given, 0.0)
    return flagged, suggested, score


def pretrained_extractor(base: str, weights: str, image_size: int | None, num_classes: int) -> tuple[Any, str]:
    """The frozen base's pooled-feature extractor and its feature-cache key, built as ``extract``
    builds it (so the two share cached features).

    Raises:
        ConfigError: the base has no such pretrained weights, or their file cannot be had; the
            one line says how to get them.
    """
    from transferkit.models import build_model, checked_image_size, get_model_info
    from transferkit.models import weights as weights_lib
    from transferkit.transfer import freeze, split_head
    from transferkit.transfer.features import extractor_key, weights_identity

    info = get_model_info(base)
    if weights_lib.is_tag(weights) and weights not in weights_lib.pretrained_tags(info.name):
        raise ConfigError(
            f"the label check needs a pretrained base, and {info.name} has no {weights!r} weights: pass "
            f"--base with published weights (`transferkit models --pretrained` lists them; {DEFAULT_BASE}'s "
            "ship with transferkit), or --no-labels"
        )
    size = checked_image_size(info.name, weights, image_size)
    try:
        model = build_model(info.name, max(num_classes, 2), weights, size)
    except WeightsError as err:
        raise ConfigError(f"the label check needs pretrained weights: {err}") from None
    freeze(model)  # as extract does: the frozen flags are part of the cache key
    extractor, _ = split_head(model)
    return extractor, extractor_key(extractor, weights_identity(info.name, weights, 0))


def _digests(path: Path) -> set[bytes]:
    """The image digests a feature-cache file holds (none when it cannot be read)."""
    try:
        with np.load(path) as saved:
            return set(saved["digests"].tolist())
    except (OSError, ValueError, KeyError):
        return set()


def features_cached(files: Sequence[str], base: str, weights: str, image_size: int | None, cache_dir: str | None) -> bool:
    """True when the disk cache already holds ``base``'s features of every file (so the label
    check costs no pass of the base). Cheap when it does not: TensorFlow is loaded (to build the
    extractor and know its cache key) only when a cache file of ``base`` (by its registry name)
    holds every file's digest."""
    from transferkit.data.options import feature_cache_dir
    from transferkit.data.split import file_digest

    folder = Path(cache_dir or feature_cache_dir())
    candidates = sorted(folder.glob(f"{base}_features-*.npz"))
    if not files or not candidates:
        return False
    wanted = {bytes.fromhex(file_digest(f)) for f in files}
    if not any(wanted <= _digests(c) for c in candidates):
        return False
    try:
        _, key = pretrained_extractor(base, weights, image_size, 2)
    except ConfigError:
        return False
    return wanted <= _digests(folder / f"{key}.npz")


def check_labels(
    files: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
    base: str = DEFAULT_BASE,
    weights: str = "imagenet",
    image_size: int | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    feature_cache_dir: str | None = None,
    verbose: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any], np.ndarray]:
    """Likely label errors among ``files`` (see the module docstring).

    Returns:
        ``(issues, summary, features)``: issues (path, given, suggested, p_given, p_suggested,
        score), most confident first; the summary says which base, image size and folds, how many
        features were computed rather than read from the cache, and the probe's accuracy; the
        features, one row per file (zeros for a file that could not be decoded).

    Raises:
        ConfigError: no pretrained weights (see :func:`pretrained_extractor`), or a class with
            fewer than 2 images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from transferkit.transfer.features import FeatureStore, file_features

    y_all = np.asarray(labels)
    counts = np.bincount(y_all, minlength=len(class_names))
    present = counts[counts > 0]
    if len(present) < 2 or present.min() < 2:
        raise ConfigError(
            "the label check needs at least 2 classes of at least 2 images each; add images or run without --labels"
        )
    extractor, key = pretrained_extractor(base, weights, image_size, len(class_names))
    store = FeatureStore(key, "disk", feature_cache_dir)
    size = int(extractor.input_shape[1])
    if verbose:
        print(f"transferkit: label check on {extractor.name} features at {size} px", file=sys.stderr)
    features, ok, computed = file_features(extractor, list(files), size, store)
    X, y = features[ok], y_all[ok]
    used = [f for f, good in zip(files, ok) if good]
    k = int(min(folds, np.bincount(y)[np.bincount(y) > 0].min()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=5000))
    probs = np.zeros((len(y), len(class_names)))
    classes = np.unique(y)
    probs[:, classes] = cross_val_predict(
        probe, X, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed), method="predict_proba"
    )
    flagged, suggested, score = confident_learning(probs, y)
    issues = [
        {
            "path": used[i], "given": class_names[y[i]], "suggested": class_names[suggested[i]],
            "p_given": round(float(probs[i, y[i]]), 4), "p_suggested": round(float(probs[i, suggested[i]]), 4),
            "score": round(float(score[i]), 4),
        }
        for i in np.flatnonzero(flagged)
    ]
    issues.sort(key=lambda r: (-r["score"], r["path"]))
    summary = {
        "base": extractor.name.removesuffix("_features"), "weights": weights, "image_size": size, "folds": k,
        "probe": f"LogisticRegression(C={PROBE_C}) on standardised features",
        "probe_accuracy": round(float((probs.argmax(axis=1) == y).mean()), 4),
        "features_computed": int(computed), "features_cached": int(ok.sum()) - int(computed),
        "undecodable": [f for f, good in zip(files, ok) if not good],
    }
    return issues, summary, features


def similar_by_features(features: np.ndarray, min_cosine: float = NEAR_DUPLICATE_COSINE) -> list[tuple[int, int, float]]:
    """``(i, j, cosine)`` for every pair of rows (i < j) whose features' cosine similarity is at
    least ``min_cosine`` (all-zero rows, undecodable files, are never paired)."""
    norms = np.linalg.norm(features, axis=1)
    rows = np.flatnonzero(norms > 0)
    unit = features[rows] / norms[rows, None]
    pairs = []
    for a in range(len(rows) - 1):
        cosine = unit[a + 1 :] @ unit[a]
        for b in np.flatnonzero(cosine >= min_cosine):
            pairs.append((int(rows[a]), int(rows[a + 1 + b]), float(cosine[b])))
    return pairs
