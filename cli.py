"""Run transferkit from a checkout: ``python cli.py finetune ...`` (same as the ``transferkit`` command)."""

import sys

from transferkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
