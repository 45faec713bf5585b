"""`make bench`: run every benchmarks/bench_*.py (or those named on the command line).

Each bench module defines ``main()`` which writes its JSON under benchmarks/results/
through ``common.write_result`` and prints its table.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    wanted = set(argv)
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name}", flush=True)
        t0 = time.perf_counter()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
            mod.main()
        except Exception as exc:  # one broken bench must not hide the others
            failed.append(name)
            print(f"bench {name} failed: {exc!r}", flush=True)
        print(f"({name}: {time.perf_counter() - t0:.1f}s)", flush=True)
    if failed:
        print("failed benches:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
