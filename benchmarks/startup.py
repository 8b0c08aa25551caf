"""Start-up benchmark: how long the command line takes before its first useful line, as ratios to
``python -c "import tensorflow"`` measured in the same run (so the targets hold on any machine).

Whole processes, interleaved round by round so that load on the machine hits every command alike:

  (ref)     python -c "import tensorflow"
  (help)    transferkit --help                              target <= 0.3x
  (models)  transferkit models                              target <= 1.5x
  (error)   transferkit finetune --data MISSING (exit 2)    target <= 1.5x

Prints every median and the ratios.

    PYTHONPATH=. python benchmarks/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TK = [sys.executable, "-m", "transferkit"]
COMMANDS = {
    "ref": ([sys.executable, "-c", "import tensorflow"], 0, None),
    "help": (TK + ["--help"], 0, 0.3),
    "models": (TK + ["models"], 0, 1.5),
    "error": (TK + ["finetune", "--data", str(REPO / "no-such-folder"), "--out", str(REPO / "no-such-run")], 2, 1.5),
}


def seconds(argv: list[str], code: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, env=env, cwd=REPO)
    took = time.perf_counter() - start
    if result.returncode != code:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}, expected {code}:\n{result.stderr.decode()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, (argv, code, _) in COMMANDS.items():
            times[name].append(seconds(argv, code))
    ref = statistics.median(times["ref"])
    print(f"{'command':<8} {'median s':>9} {'ratio':>7} {'target':>7}   every run")
    for name, (_, _, target) in COMMANDS.items():
        median = statistics.median(times[name])
        goal = f"<= {target}" if target else ""
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:<8} {median:>9.2f} {median / ref:>6.2f}x {goal:>7}   {runs}")


if __name__ == "__main__":
    main()
