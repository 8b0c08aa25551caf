"""Training runs and their run folders: finetune (:mod:`.finetune`) and extract
(:mod:`.extract`), crash-safe resume (:mod:`.resume`), the atomic run folder, the one writer
(:mod:`.folder`), export and distribution. The run functions are re-exported by the package front
door (``transferkit.finetune``); here the names are the modules."""

from typing import Any

__all__ = ["RunResult"]


def __getattr__(name: str) -> Any:  # lazily: the run folder code loads Keras
    if name == "RunResult":
        from transferkit.runs.folder import RunResult

        return RunResult
    raise AttributeError(f"module 'transferkit.runs' has no attribute {name!r}")
