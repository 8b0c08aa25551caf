"""Training runs and their run folders: finetune (:mod:`.finetune`) and extract
(:mod:`.extract`), crash-safe resume (:mod:`.resume`), the atomic run folder, the one writer
(:mod:`.folder`), export and distribution. The run functions are re-exported by the package front
door (``transferkit.finetune``); here the names are the modules."""

from transferkit.runs.folder import RunResult

__all__ = ["RunResult"]
