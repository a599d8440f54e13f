"""What one request costs the gateway: wall time and the worker's CPU, per kind of request.

Run from the repository root: ``python bench/request_cost.py [--requests 200]
[--databases sqlite,postgresql] [--engine rgw]``. For each database (SQLite in a file, and a
PostgreSQL cluster of its own when ``initdb`` is there) it seeds a stack (``tests/stack.py``)
over one S3 engine (Ceph's RGW when its packages are installed, else moto; RGW is the one
whose ranged reads cost what S3's do), runs gunicorn with one worker (``bench/throughput.py``'s
``Bench``), stores a 16 MiB file and
times, one request at a time on a warm connection:

* ``healthz``: ``GET /healthz``, the lightest request the gateway serves (the baseline);
* ``head``: ``HEAD`` of the file: the bearer token, the catalog row, one audit row;
* ``range``: ``GET`` of 1 MiB from the middle (two segments), to the last byte: the same,
  plus the S3 request, the segments' decryption and a second audit row;
* ``direct``: the same range straight from S3 (a presigned ``GET``), for comparison.

For each it prints the median wall time and the worker's CPU per request (``/proc``: the
worker's CPU seconds over all the requests of that kind, divided by their number), and what
each costs over the baseline, and how much longer the range takes through the gateway than
straight from S3. The last line, e.g. ``request_cost: sqlite head=4.4ms range=10.8ms
healthz=1.0ms range_wall/direct=2.90 | postgresql ...``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import MIB, RgwServer, cpu_seconds, fake_aws_env  # noqa: E402
from bench.audit import PostgresCluster  # noqa: E402
from bench.throughput import Bench, round_trip_ms  # noqa: E402

PATH = "documents/request-cost.pdf"
OBJECT_MIB = 16


def timed(run: Callable[[], object], worker: int, count: int) -> tuple[float, float]:
    """(median wall ms, worker CPU ms per request) over ``count`` runs after five warm ones."""
    for _ in range(5):
        run()
    walls = []
    before = cpu_seconds(worker)
    for _ in range(count):
        started = time.perf_counter()
        run()
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls), (cpu_seconds(worker) - before) / count * 1000


def measure(db_url: str, engine: str, workdir: Path, count: int) -> dict[str, tuple[float, float]]:
    bench = Bench(workdir, OBJECT_MIB * MIB + MIB, engine, db_url)
    try:
        data = b"%PDF-1.7\n" + os.urandom(OBJECT_MIB * MIB - 9)
        bench.gateway_put(PATH, data)
        bench.direct_put("direct/request-cost", data)
        url = f"{bench.gateway.url}/api/v1/files/{PATH}"
        direct_url = bench.s3.generate_presigned_url(
            "get_object", Params={"Bucket": bench.bucket, "Key": "direct/request-cost"},
            ExpiresIn=3600)
        start = len(data) // 2 + 12_345
        wanted = data[start:start + MIB]
        rng = {"Range": f"bytes={start}-{start + MIB - 1}"}

        def get(target: str, headers: dict[str, str]) -> None:
            resp = bench.http.get(target, headers=headers)
            if resp.status_code != 206 or resp.content != wanted:
                raise RuntimeError(f"ranged GET answered {resp.status_code}")

        def head() -> None:
            if bench.http.head(url, headers=bench.auth).status_code != 200:
                raise RuntimeError("HEAD failed")

        return {
            "healthz": timed(lambda: round_trip_ms(bench), bench.worker, count),
            "head": timed(head, bench.worker, count),
            "range": timed(lambda: get(url, {**bench.auth, **rng}), bench.worker, count),
            "direct": timed(lambda: get(direct_url, rng), bench.worker, count),
        }
    finally:
        bench.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests of each kind")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="of sqlite and postgresql (skipped, and said so, without initdb)")
    parser.add_argument("--engine", choices=("rgw", "moto"), default=None,
                        help="S3 engine (default: rgw when Ceph's packages are there, else moto)")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if not databases or set(databases) - {"sqlite", "postgresql"}:
        parser.error("--databases takes sqlite, postgresql or both")
    engine = args.engine or ("rgw" if RgwServer.available() else "moto")
    fake_aws_env()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; S3 engine {engine}; "
          f"{args.requests} requests of each kind, one at a time, gunicorn with one worker")
    summaries = []
    for database in databases:
        workdir = Path(tempfile.mkdtemp(prefix=f"gw-bench-cost-{database}-"))
        cluster = None
        if database == "postgresql":
            try:
                cluster = PostgresCluster()
            except RuntimeError as exc:
                print(f"{database}: skipped ({exc})")
                continue
            db_url = cluster.start()
        else:
            db_url = f"sqlite:///{workdir / 'gateway.db'}"
        try:
            result = measure(db_url, engine, workdir, args.requests)
        finally:
            if cluster is not None:
                cluster.stop()
        base_wall, base_cpu = result["healthz"]
        print(f"{database}:")
        for kind, (wall, cpu) in result.items():
            over = "" if kind in ("healthz", "direct") else \
                f"  ({wall - base_wall:+.2f} ms wall, {cpu - base_cpu:+.2f} ms CPU over healthz)"
            worker = "" if kind == "direct" else f", worker CPU {cpu:.2f} ms"
            print(f"  {kind:8} wall {wall:6.2f} ms{worker}{over}")
        ratio = result["range"][0] / result["direct"][0]
        print(f"  a range through the gateway takes {ratio:.2f} x as long as straight from S3")
        summaries.append(f"{database} " + " ".join(
            f"{kind}={result[kind][1]:.1f}ms" for kind in ("head", "range", "healthz"))
            + f" range_wall/direct={ratio:.2f}")
    print("request_cost: " + " | ".join(summaries) + " (worker CPU per request; wall ratio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
