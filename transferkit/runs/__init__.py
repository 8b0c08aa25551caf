"""Training runs and their run folders: finetune and extract, crash-safe resume, the atomic run
folder (the one writer), export, and distribution."""

from transferkit.runs.extract import ExtractConfig, extract
from transferkit.runs.finetune import FinetuneConfig, finetune
from transferkit.runs.folder import RunResult

__all__ = ["ExtractConfig", "FinetuneConfig", "RunResult", "extract", "finetune"]
