"""The dataset doctor: decode every file and report what would hurt training.

``transferkit doctor --data DIR|CSV|tfds:NAME`` prints a report and writes ``doctor.json``
(and, through :mod:`transferkit.data.doctor_files`, ``doctor.csv``, ``doctor.md`` and thumbnails).
The scan decodes with Pillow in a thread pool (Pillow and hashlib release the GIL, so every core
works), JPEGs at reduced size (``Image.draft``: still a full pass over the compressed data, so
truncation is caught, at a fraction of the cost), and measures each image's quality and
perceptual hash (:mod:`transferkit.data.quality`). Likely label errors need a pretrained model,
so they are found a layer up (:mod:`transferkit.runs.label_check`) and added to the report.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from transferkit.data.probe import FORMAT_CODES, probe_file, probe_files
from transferkit.data.progress import ProgressBar
from transferkit.data.quality import ANALYSIS_SIDE, ImageStats, measure, quality_flags, similar_pairs
from transferkit.errors import DataError

SMALL_SIDE = 32  # pixels: smaller images carry little for a 224 px model
IMBALANCE_WARN = 3.0  # largest class / smallest class
DECODED_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "DIB": "bmp", "WEBP": "webp"}

# Problems make a file unusable; findings are worth knowing but the pipeline handles them.
PROBLEMS = ("zero_byte", "non_image", "unsupported_format", "unreadable", "truncated")
FINDINGS = ("grayscale", "cmyk", "sixteen_bit", "alpha", "exif_rotated", "animated", "small")
QUALITY = ("dark", "bright", "blurry", "low_information", "extreme_aspect")
# pHash bits two copies may differ by: resized and JPEG-quality-15 copies of the hymenoptera
# photos differ by 4 bits at most, copies cropped by 2% a side by 10; distinct photos there by
# 14 or more. (Crops of 5% a side and more drift past it: the hash is global.)
NEAR_DUPLICATE_BITS = 10


@dataclass
class FileReport:
    """What the doctor found in one file."""

    path: str
    label: int
    size: int = 0
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""
    problem: str | None = None
    detail: str = ""
    findings: list[str] = field(default_factory=list)
    digest: str = ""
    stats: ImageStats | None = None


def check_bytes(data: bytes, path: str = "", label: int = -1) -> FileReport:
    """Full check of one encoded image (used for files and for tfds examples alike)."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    report = FileReport(path, label, len(data))
    report.digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if not data:
        report.problem, report.detail = "zero_byte", "empty file (0 bytes)"
        return report
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            report.format = DECODED_FORMATS.get(im.format or "", im.format)
            report.width, report.height = im.size
            report.mode = im.mode
            if report.format not in FORMAT_CODES:
                report.problem, report.detail = "unsupported_format", f"unsupported format ({im.format}); convert it to JPEG or PNG"
                return report
            orientation = im.getexif().get(0x0112, 1)
            animated = getattr(im, "n_frames", 1) > 1
            has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
            if im.format == "JPEG":  # decode at the largest reduction that still covers the analysis size
                scale = ANALYSIS_SIDE / max(1, min(im.size))
                im.draft("RGB", (max(1, int(im.size[0] * scale)), max(1, int(im.size[1] * scale))))
            im.load()
            report.stats = measure(im)
    except UnidentifiedImageError:
        probe_format = _sniff(data)
        if probe_format:
            report.problem, report.detail = "unsupported_format", f"unsupported format ({probe_format})"
        else:
            report.problem, report.detail = "non_image", "not an image (unknown content)"
        return report
    except OSError as err:
        text = str(err)
        kind = "truncated" if "truncat" in text.lower() or "premature end" in text.lower() else "unreadable"
        report.problem, report.detail = kind, f"{kind}: {text}"
        return report
    except Exception as err:  # noqa: BLE001 - a corrupt file can break any decoder step
        report.problem, report.detail = "unreadable", f"unreadable: {type(err).__name__}: {err}"
        return report
    if report.mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I", "La") or (
        report.mode == "P" and _palette_is_gray(im)
    ):
        report.findings.append("grayscale")
    if report.mode == "CMYK":
        report.findings.append("cmyk")
    if report.mode.startswith("I;16") or report.mode == "I" or im.info.get("bits", 8) == 16:
        report.findings.append("sixteen_bit")
    if has_alpha:
        report.findings.append("alpha")
    if orientation not in (0, 1):
        report.findings.append("exif_rotated")
    if animated:
        report.findings.append("animated")
    if min(report.width, report.height) < SMALL_SIDE:
        report.findings.append("small")
    return report


def _palette_is_gray(im: Any) -> bool:
    palette = im.getpalette() or []
    return bool(palette) and all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def _sniff(data: bytes) -> str | None:
    from transferkit.data.probe import sniff_format

    fmt = sniff_format(data[:32])
    return fmt if fmt and fmt not in FORMAT_CODES else None


def check_file(path: str, label: int) -> FileReport:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return FileReport(path, label, problem="unreadable", detail=f"unreadable: {err.strerror or err}")
    return check_bytes(data, path, label)


PROBLEM_TEXT = {
    "zero_byte": "zero-byte files", "non_image": "not images", "unsupported_format": "unsupported formats",
    "unreadable": "unreadable", "truncated": "truncated",
}
FINDING_TEXT = {
    "grayscale": "grayscale (converted to RGB)", "cmyk": "CMYK (converted to RGB)",
    "sixteen_bit": "16-bit (converted to 8-bit)", "alpha": "alpha channel (composited on white)",
    "exif_rotated": "EXIF-rotated (turned upright)", "animated": "animated GIFs (first frame used)",
    "small": f"tiny (< {SMALL_SIDE} px)",
}
QUALITY_TEXT = {
    "dark": "very dark", "bright": "very bright", "blurry": "blurry", "low_information": "almost one colour",
    "extreme_aspect": "extreme aspect ratio",
}


@dataclass
class DoctorReport:
    """The doctor's findings over a dataset (``doctor.json`` is :meth:`to_json`)."""

    source: str
    class_names: list[str]
    counts: dict[str, int]
    imbalance: float
    problems: dict[str, list[dict[str, str]]]
    findings: dict[str, list[str]]
    duplicates_within_class: list[list[str]]
    duplicates_across_classes: list[list[str]]
    skipped_by_name: list[dict[str, str]]
    num_files: int
    quality: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    near_duplicates: list[dict[str, Any]] | None = None
    label_issues: list[dict[str, Any]] | None = None
    label_check: dict[str, Any] = field(default_factory=dict)
    usable: list[tuple[str, int, str]] = field(default_factory=list, repr=False)

    @property
    def num_problems(self) -> int:
        return sum(len(v) for v in self.problems.values()) + len(self.skipped_by_name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("usable")
        return {**data, "num_problems": self.num_problems}

    def rows(self) -> list[dict[str, Any]]:
        """One row per finding: ``file, kind, detail, suggested_class, score`` (``doctor.csv``)."""
        out: list[dict[str, Any]] = []

        def add(file: str, kind: str, detail: str, suggested: str = "", score: Any = "") -> None:
            out.append({"file": file, "kind": kind, "detail": detail, "suggested_class": suggested, "score": score})

        for issue in self.label_issues or []:
            add(issue["path"], "label", f"labelled {issue['given']}, looks like {issue['suggested']} "
                f"(p={issue['p_suggested']:.2f} vs {issue['p_given']:.2f})", issue["suggested"], issue["score"])
        for pair in self.near_duplicates or []:
            for a, b in ((pair["a"], pair["b"]), (pair["b"], pair["a"])):
                how = (f"pHash {pair['distance']} bits apart" if pair["by"] == "phash"
                       else f"feature cosine {pair['cosine']:.3f}")
                add(a["path"], pair["kind"], f"near-identical to {b['path']} ({b['class']}, {b['split'] or 'no split'}); {how}",
                    "", pair.get("distance", pair.get("cosine")))
        for kind, groups in (("duplicate_within_class", self.duplicates_within_class),
                             ("duplicate_across_classes", self.duplicates_across_classes)):
            for group in groups:
                for path in group:
                    add(path, kind, "byte-identical to " + ", ".join(p for p in group if p != path))
        for kind, items in self.quality.items():
            for item in items:
                add(item["path"], kind, item["detail"], "", item["score"])
        for kind, problems in self.problems.items():
            for row in problems:
                add(row["path"], kind, row["detail"])
        for row in self.skipped_by_name:
            add(row["path"], "not_an_image", row["reason"])
        for kind, paths in self.findings.items():
            for path in paths:
                add(path, kind, FINDING_TEXT[kind])
        return out

    def text(self, limit: int = 5) -> str:
        lines = [f"dataset: {self.source}", f"{self.num_files} files, {len(self.class_names)} classes"]
        width = max((len(c) for c in self.class_names), default=5)
        for name in self.class_names:
            lines.append(f"  {name:<{width}}  {self.counts.get(name, 0):>7}")
        if self.counts:
            flag = "  (imbalanced: consider --class-weight auto)" if self.imbalance >= IMBALANCE_WARN else ""
            lines.append(f"imbalance (largest / smallest class): {self.imbalance:.2f}{flag}")
        labels = {**PROBLEM_TEXT, **FINDING_TEXT}
        for kind, rows in self.problems.items():
            if rows:
                lines.append(f"PROBLEM {labels[kind]}: {len(rows)} (skipped in training)")
                lines += [f"    {r['path']}: {r['detail']}" for r in rows[:limit]]
                if len(rows) > limit:
                    lines.append(f"    ... {len(rows) - limit} more in doctor.json")
        if self.skipped_by_name:
            lines.append(f"PROBLEM not image files by name: {len(self.skipped_by_name)} (skipped in training)")
            lines += [f"    {r['path']}: {r['reason']}" for r in self.skipped_by_name[:limit]]
        for kind, paths in self.findings.items():
            if paths:
                lines.append(f"note {labels[kind]}: {len(paths)}")
                lines += [f"    {p}" for p in paths[:limit]]
        for title, groups in (
            ("exact duplicates within a class", self.duplicates_within_class),
            ("exact duplicates ACROSS classes (conflicting labels)", self.duplicates_across_classes),
        ):
            if groups:
                lines.append(f"{title}: {len(groups)} group(s)")
                lines += ["    " + "  ==  ".join(g) for g in groups[:limit]]
        for kind, items in self.quality.items():
            if items:
                lines.append(f"quality {QUALITY_TEXT[kind]}: {len(items)}")
                lines += [f"    {r['path']}: {r['detail']}" for r in items[:limit]]
        if self.near_duplicates is not None:
            lines.append(f"near-duplicates (pHash within {NEAR_DUPLICATE_BITS} bits, or alike pretrained features): {len(self.near_duplicates)} pair(s)")
            for pair in self.near_duplicates[:limit]:
                a, b = pair["a"], pair["b"]
                lines.append(f"    {pair['kind']}: {a['path']} ({a['class']}, {a['split']})  ~  {b['path']} ({b['class']}, {b['split']})")
        if self.label_issues is not None:
            check = self.label_check
            lines.append(
                f"likely label errors: {len(self.label_issues)} (confident learning on {check.get('base')} "
                f"features, {check.get('folds')}-fold probe accuracy {check.get('probe_accuracy', 0):.3f})"
            )
            for issue in self.label_issues[: 2 * limit]:
                lines.append(f"    {issue['path']}: labelled {issue['given']}, looks like {issue['suggested']} (score {issue['score']:.2f})")
        if not self.rows():
            lines.append("no problems found")
        return "\n".join(lines)


def summarize(
    source: str,
    class_names: Sequence[str],
    reports: Sequence[FileReport],
    skipped_by_name: Sequence[tuple[str, str]] = (),
) -> DoctorReport:
    counts = Counter(class_names[r.label] for r in reports if r.problem is None)
    sizes = [counts.get(c, 0) for c in class_names]
    imbalance = max(sizes) / max(min(sizes), 1) if sizes else 0.0
    problems: dict[str, list[dict[str, str]]] = {k: [] for k in PROBLEMS}
    findings: dict[str, list[str]] = {k: [] for k in FINDINGS}
    quality: dict[str, list[dict[str, Any]]] = {k: [] for k in QUALITY}
    by_digest: dict[str, list[FileReport]] = defaultdict(list)
    named = []
    for path, why in skipped_by_name:  # left out by the index from the name or size alone
        kind = "zero_byte" if why.startswith("empty") else "unsupported_format" if why.startswith("unsupported") else None
        if kind:
            problems[kind].append({"path": path, "detail": why})
        else:
            named.append({"path": path, "reason": why})
    for r in reports:
        if r.problem:
            problems[r.problem].append({"path": r.path, "detail": r.detail})
        for finding in r.findings:
            findings[finding].append(r.path)
        if r.stats is not None and r.problem is None:
            for kind, detail in quality_flags(r.stats):
                score = {"extreme_aspect": r.stats.aspect, "low_information": r.stats.entropy,
                         "blurry": r.stats.sharpness}.get(kind, r.stats.brightness)
                quality[kind].append({"path": r.path, "detail": detail, "score": round(score, 2)})
        if r.digest and r.size:
            by_digest[r.digest].append(r)
    within, across = [], []
    for group in by_digest.values():
        if len(group) > 1:
            paths = sorted(r.path for r in group)
            (across if len({r.label for r in group}) > 1 else within).append(paths)
    return DoctorReport(
        source=source,
        class_names=list(class_names),
        counts={c: counts.get(c, 0) for c in class_names},
        imbalance=round(imbalance, 3),
        problems=problems,
        findings=findings,
        duplicates_within_class=sorted(within),
        duplicates_across_classes=sorted(across),
        skipped_by_name=named,
        num_files=len(reports) + len(skipped_by_name),
        quality=quality,
    )


def scan(
    files: Sequence[str],
    labels: Sequence[int],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileReport]:
    """Checks every file in parallel, in order; ``progress(n)`` after each chunk of ``n`` files."""
    chunk = 16
    spans = [(i, min(i + chunk, len(files))) for i in range(0, len(files), chunk)]

    def run(span: tuple[int, int]) -> list[FileReport]:
        out = [check_file(files[i], labels[i]) for i in range(*span)]
        if progress:
            progress(len(out))
        return out

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return [r for part in pool.map(run, spans) for r in part]


def doctor(
    source: str,
    data_dir: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str | None = "split",
    tfds_splits: str | None = None,
    workers: int | None = None,
    verbose: bool = True,
    near_duplicates: bool = False,
    val_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 0,
) -> DoctorReport:
    """Scans a dataset (folder, CSV or ``tfds:NAME``) and returns the report.

    Args:
        near_duplicates: Also pair near-identical images (:data:`NEAR_DUPLICATE_BITS`) within
            and across classes and across the train/validation/test split that the training
            commands would make with ``val_split``, ``test_split`` and ``seed``.

    Raises:
        DataError: the source itself cannot be read (missing, no classes, bad CSV, unknown tfds).
    """
    from transferkit.data import index_source
    from transferkit.data.split import training_splits
    from transferkit.data.tfds_source import is_tfds

    if is_tfds(source):
        return _doctor_tfds(source, data_dir, tfds_splits, verbose)
    index = index_source(source, path_column, label_column, split_column)
    bar = ProgressBar(len(index.files), "doctor", enabled=verbose)
    reports = scan(index.files, index.labels, workers, bar.add if bar else None)
    if bar:
        bar.close()
    report = summarize(str(source), index.class_names, reports, index.skipped)
    # The training commands split the files that pass the header probe, as load_data does.
    keep = [i for i, p in enumerate(probe_files(index.files, index.sizes)) if not p.problem]
    try:
        given = [index.splits[i] for i in keep] if index.splits else []
        chosen = training_splits([index.labels[i] for i in keep], given, val_split, seed, index.class_names, test_split)
    except DataError:  # a class too small to split: training would refuse it; the report says why not
        chosen = [""] * len(keep)
    split_of = {index.files[i]: s for i, s in zip(keep, chosen)}
    report.usable = [(r.path, r.label, split_of.get(r.path, "")) for r in reports if r.problem is None]
    if near_duplicates:
        report.near_duplicates = near_duplicate_pairs(reports, index.class_names, split_of)
    return report


def _pair(a: tuple[str, int, str], b: tuple[str, int, str], class_names: Sequence[str], **measure: Any) -> dict[str, Any]:
    """A near-duplicate pair of ``(path, label, split)`` files; ``kind`` says whether they cross
    classes (conflicting labels), splits (validation leaks into training) or neither."""
    kind = (
        "near_duplicate_across_classes" if a[1] != b[1]
        else "near_duplicate_across_splits" if a[2] != b[2]
        else "near_duplicate_within_class"
    )
    return {
        "kind": kind, **measure, "across_splits": a[2] != b[2],
        "a": {"path": a[0], "class": class_names[a[1]], "split": a[2]},
        "b": {"path": b[0], "class": class_names[b[1]], "split": b[2]},
    }


def add_feature_pairs(report: DoctorReport, pairs: Sequence[tuple[str, str, float]]) -> None:
    """Adds near-duplicates a pretrained base's features found (``(path, path, cosine)``) to
    ``report.near_duplicates``, but for pairs already there or byte-identical."""
    usable = {path: (path, label, split) for path, label, split in report.usable}
    known = {frozenset((p["a"]["path"], p["b"]["path"])) for p in report.near_duplicates or []}
    for group in report.duplicates_within_class + report.duplicates_across_classes:
        known |= {frozenset((x, y)) for x in group for y in group if x != y}
    found = list(report.near_duplicates or [])
    for x, y, cosine in pairs:
        if frozenset((x, y)) not in known and x in usable and y in usable:
            found.append(_pair(usable[x], usable[y], report.class_names, by="features", cosine=round(cosine, 4)))
    report.near_duplicates = sorted(found, key=_pair_order)


def _pair_order(pair: dict[str, Any]) -> tuple[Any, ...]:
    return (pair["by"] != "phash", pair.get("distance", 0), -pair.get("cosine", 0), pair["a"]["path"], pair["b"]["path"])


def near_duplicate_pairs(
    reports: Sequence[FileReport], class_names: Sequence[str], split_of: dict[str, str]
) -> list[dict[str, Any]]:
    """Pairs of usable, not byte-identical images whose pHashes are within
    :data:`NEAR_DUPLICATE_BITS`, most alike first (see :func:`_pair`)."""
    usable = [r for r in reports if r.problem is None and r.stats is not None]
    pairs = []
    for i, j, distance in similar_pairs([r.stats.phash for r in usable], NEAR_DUPLICATE_BITS):  # type: ignore[union-attr]
        a, b = usable[i], usable[j]
        if a.digest == b.digest:
            continue  # byte-identical: already listed as an exact duplicate
        pairs.append(_pair(
            (a.path, a.label, split_of.get(a.path, "")), (b.path, b.label, split_of.get(b.path, "")),
            class_names, by="phash", distance=distance,
        ))
    return sorted(pairs, key=_pair_order)


def _doctor_tfds(source: str, data_dir: str | None, tfds_splits: str | None, verbose: bool) -> DoctorReport:
    """tfds examples are re-encoded by tfds, so only class counts and image properties matter."""
    import numpy as np
    from PIL import Image

    from transferkit.data.tfds_source import open_tfds

    src = open_tfds(source, data_dir, tfds_splits)
    reports: list[FileReport] = []
    for split, name in src.splits.items():
        for i, (image, label) in enumerate(src.dataset(split).as_numpy_iterator()):
            image = np.asarray(image)
            r = FileReport(f"{source}/{name}/{i}", int(label), int(image.nbytes), "tensor", image.shape[1], image.shape[0])
            r.digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
            if image.ndim == 3 and image.shape[-1] == 1:
                r.findings.append("grayscale")
            if min(image.shape[:2]) < SMALL_SIDE:
                r.findings.append("small")
            r.stats = measure(Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image))
            reports.append(r)
    return summarize(source, src.class_names, reports)


__all__ = [
    "DoctorReport", "FileReport", "add_feature_pairs", "check_bytes", "check_file", "doctor", "near_duplicate_pairs", "scan", "summarize",
    "probe_file",
]
