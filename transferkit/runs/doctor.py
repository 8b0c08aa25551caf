"""The ``doctor`` command's work: the data layer's scan (:func:`transferkit.data.doctor.doctor`),
the label check on pretrained features (:mod:`transferkit.runs.label_check`) when asked or when
those features are already cached, and the report's files (:mod:`transferkit.data.doctor_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.data.doctor import DoctorReport, add_feature_pairs, doctor
from transferkit.data.doctor_files import write_outputs
from transferkit.data.tfds_source import is_tfds
from transferkit.errors import ConfigError
from transferkit.runs.label_check import DEFAULT_BASE, DEFAULT_FOLDS, check_labels, features_cached, pretrained_extractor, similar_by_features


def diagnose(
    source: str,
    out: str | Path | None = None,
    labels: bool | None = None,
    near_duplicates: bool = False,
    base: str = DEFAULT_BASE,
    weights: str = "imagenet",
    image_size: int | None = None,
    folds: int = DEFAULT_FOLDS,
    val_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 0,
    feature_cache_dir: str | None = None,
    workers: int | None = None,
    verbose: bool = True,
    **source_options: Any,
) -> tuple[DoctorReport, dict[str, Path]]:
    """Checks a dataset and writes the doctor's files to ``out`` (nothing when None).

    Args:
        labels: True to look for likely label errors, False never, None only when ``base``'s
            features of every usable file are already in the feature cache (no pass of the base).
        near_duplicates: Pair near-identical images within and across classes and splits (by
            pHash; with the label check, also by the cosine of the base's features).
        source_options: ``data_dir``, ``path_column``, ``label_column``, ``split_column``,
            ``tfds_splits`` of :func:`transferkit.data.doctor.doctor`.

    Raises:
        ConfigError, DataError: bad input, before anything is written (e.g. ``labels=True`` with
            no pretrained weights to be had).
    """
    if labels and is_tfds(source):
        raise ConfigError("the label check needs image files; tfds sources are not supported (drop --labels)")
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if labels:
        pretrained_extractor(base, weights, image_size, 2)  # no weights: refuse before the scan
    report = doctor(
        source, workers=workers, verbose=verbose, near_duplicates=near_duplicates,
        val_split=val_split, test_split=test_split, seed=seed, **source_options,
    )
    files = [path for path, _, _ in report.usable]
    if labels is None and not is_tfds(source):
        labels = features_cached(files, base, weights, image_size, feature_cache_dir)
    if labels:
        issues, summary, features = check_labels(
            files, [label for _, label, _ in report.usable], report.class_names, base, weights, image_size,
            folds, seed, feature_cache_dir, verbose,
        )
        report.label_issues, report.label_check = issues, summary
        if near_duplicates:  # the features at hand also see through crops the pHash misses
            add_feature_pairs(report, [(files[i], files[j], c) for i, j, c in similar_by_features(features)])
    return report, (write_outputs(report, out) if out is not None else {})
