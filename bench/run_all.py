"""Run every benchmark script in bench/ (each writes its own JSON next to it)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

failed = []
for script in sorted(HERE.glob("*.py")):
    if script.name == Path(__file__).name:
        continue
    print(f"== {script.name}", flush=True)
    if subprocess.run([sys.executable, str(script), "--out", str(script.with_suffix(".json"))]).returncode:
        failed.append(script.name)
sys.exit(f"failed: {', '.join(failed)}" if failed else 0)
