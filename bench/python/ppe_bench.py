"""Python's own concurrent.futures.ProcessPoolExecutor on the no-op task of
bench/python-workers.js, driven from Python: a burst through map(chunksize=1), then
one task at a time through submit().result(). Prints one JSON line.

python3 bench/python/ppe_bench.py --workers 4 --burst 20000 --latency 2000
"""

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor


def echo(payload):
    return payload


def cpu_ms(pid):
    """User + system CPU of a process in ms, from /proc (10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--burst", type=int, default=20000)
    ap.add_argument("--latency", type=int, default=2000)
    ap.add_argument("--latency-warmup", type=int, default=200)
    a = ap.parse_args()
    payloads = [{"i": i, "s": "x"} for i in range(a.burst)]
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        # Warm-up burst of the same size: every process started and warm.
        list(ex.map(echo, payloads, chunksize=1))
        pids = list(ex._processes)
        cpu0 = sum(cpu_ms(p) for p in pids)
        t = time.perf_counter()
        out = list(ex.map(echo, payloads, chunksize=1))
        burst_s = time.perf_counter() - t
        cpu1 = sum(cpu_ms(p) for p in pids)
        if [r["i"] for r in out] != list(range(a.burst)):
            raise SystemExit("wrong burst results")
        for i in range(a.latency_warmup):
            ex.submit(echo, {"i": i, "s": "x"}).result()
        lat = []
        for i in range(a.latency):
            t = time.perf_counter()
            r = ex.submit(echo, {"i": i, "s": "x"}).result()
            lat.append((time.perf_counter() - t) * 1e6)
            if r["i"] != i:
                raise SystemExit("wrong latency result")
    lat.sort()
    rank = lambda p: lat[min(len(lat) - 1, max(0, -(-len(lat) * p // 100) - 1))]
    print(
        json.dumps(
            {
                "tps": a.burst / burst_s,
                "p50": rank(50),
                "p99": rank(99),
                "workerCpuUsPerTask": (cpu1 - cpu0) * 1000.0 / a.burst,
                "python": os.sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
