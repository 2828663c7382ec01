"""How much a run pays to remove what killed runs left in its output tree (ml.atomic.
remove_stale_temps_under, called at the start of every resize): one pass over an output tree of
N files in folders of 1,000, against the baseline of a plain `os.walk` listing of the same tree.

    .venv/bin/python bench/stale_temps.py [--sizes 100000 1000000] [--repeats 3]

Prints per size the median time of each, the cost per file and the ratio; the last line is one
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.atomic import remove_stale_temps_under  # noqa: E402


def make_tree(root: str, n: int, per_folder: int = 1000) -> None:
    for d in range(max(1, n // per_folder)):
        folder = os.path.join(root, f"c{d:05d}")
        os.mkdir(folder)
        for i in range(min(per_folder, n)):
            os.close(os.open(os.path.join(folder, f"{i:05d}.jpg"), os.O_CREAT | os.O_WRONLY))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    figures = {}
    for n in args.sizes:
        root = tempfile.mkdtemp(prefix="stale-temps-")
        try:
            make_tree(root, n)
            ours, walk = [], []
            for _ in range(args.repeats):
                stale = os.path.join(root, "c00000", ".x.jpg.tmp-999999999-0123abcd")
                open(stale, "wb").close()                  # one killed run's leftover
                t = time.perf_counter()
                assert remove_stale_temps_under(root) == 1
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                sum(len(files) for _, _, files in os.walk(root))
                walk.append(time.perf_counter() - t)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        o, w = statistics.median(ours), statistics.median(walk)
        figures[str(n)] = {"ours_s": round(o, 4), "os_walk_s": round(w, 4),
                           "ours_us_per_file": round(o / n * 1e6, 3), "ratio": round(o / w, 3)}
        print(f"{n:>9} files: ours {o:.3f} s ({o / n * 1e6:.2f} us/file), os.walk {w:.3f} s, "
              f"ratio {o / w:.2f}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
