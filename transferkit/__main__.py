"""``python -m transferkit`` runs the command line."""

import sys

from transferkit.cli import main

sys.exit(main())
