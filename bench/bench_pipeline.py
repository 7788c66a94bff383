"""Wall time of the README's main command from nothing: the whole demo pipeline in a scratch folder.

    python bench/bench_pipeline.py                 # experiments/pipeline_demo.yaml, fresh data, results and caches

Prints each stage's seconds (from the pipeline's own stages.json) and the total, so the README's
"about 5 minutes on 2 CPU cores" is a measurement, not a hope.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.core.cli import Parser

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--config", default="experiments/pipeline_demo.yaml")
    p.add_argument("--workdir", default="results", help="scratch folder (kept off /tmp: file creation is slow there)")
    args = p.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp).resolve()
        start = time.perf_counter()
        subprocess.run([sys.executable, "training/pipeline.py", "--config", args.config,
                        f"data.processed_dir={tmp / 'processed'}", f"output.results_dir={tmp / 'results'}",
                        f"gan.overrides=[output.synthetic_dir={tmp / 'synthetic'}]", "output.name=bench"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
        total = time.perf_counter() - start
        stages = json.loads((tmp / "results" / "pipeline" / "bench" / "stages.json").read_text())
    print(f"{args.config} from scratch, {os.cpu_count()} CPUs:")
    for name, record in stages.items():
        print(f"  {name:45s} {record['seconds']:7.1f} s")
    print(f"  {'total (wall, including start-up)':45s} {total:7.1f} s")


if __name__ == "__main__":
    main()
