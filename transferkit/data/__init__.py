"""Datasets: sources (class folders, CSV, tensorflow-datasets), splits, the decode pipeline,
caches, augmentation and the dataset doctor. This front door only re-exports."""

from transferkit.data.loader import (
    MEMORY_CACHE_SHARE,
    SAMPLE_DIR,
    DataBundle,
    available_memory,
    index_source,
    load_data,
    resolve_source,
)
from transferkit.data.options import DataOptions
from transferkit.data.split import read_manifest

__all__ = [
    "MEMORY_CACHE_SHARE",
    "SAMPLE_DIR",
    "DataBundle",
    "DataOptions",
    "available_memory",
    "index_source",
    "load_data",
    "read_manifest",
    "resolve_source",
]
