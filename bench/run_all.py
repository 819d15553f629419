"""Run every benchmark script in bench/ that writes a JSON result, each to its own JSON next to it.

python bench/run_all.py        (what `make bench` runs; takes no options)
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

#: Measurements run by hand: with their own subcommands and no --out (docs/flip_loss.md; the active sampler's
#: variants, docs/userstudy.md), or too long for a bench run (the 3-seed precision comparison, docs/performance.md;
#: the 500 simulated studies of the sampling designs, docs/userstudy.md).
BY_HAND = {"flip_loss.py", "precision_seeds.py", "userstudy_active_variants.py", "userstudy_sampling.py"}


def scripts() -> list[Path]:
    """The benchmarks this runs, in name order."""
    return [
        script
        for script in sorted(HERE.glob("*.py"))
        # A leading underscore: a module the benchmarks import, not one of them.
        if script.name != Path(__file__).name and script.name not in BY_HAND and not script.name.startswith("_")
    ]


def main() -> int | str:
    parser = argparse.ArgumentParser(
        prog="python bench/run_all.py",
        description=__doc__.split("\n\n")[0],
        epilog=f"Runs: {', '.join(script.name for script in scripts())}. By hand only: {', '.join(sorted(BY_HAND))}.",
    )
    parser.parse_args()
    failed = []
    for script in scripts():
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script), "--out", str(script.with_suffix(".json"))]).returncode:
            failed.append(script.name)
    return f"failed: {', '.join(failed)}" if failed else 0


if __name__ == "__main__":
    sys.exit(main())
