"""Resumable (tus) uploads against PUT of the same bytes, in the same run.

Starts moto's S3 server and the gateway (gunicorn, one worker), then uploads the same object
by ``PUT /api/v1/files/PATH`` and by tus at ``/api/v1/uploads`` (one PATCH with the whole
file, and PATCHes of 5 MiB), in turns, several times. Prints each transfer, the worker's
memory growth, and, as its last line, the ratios of tus's best rate to PUT's best rate.

Goals: one PATCH >= 0.9 of PUT, 5 MiB chunks >= 0.8, worker memory growth <= 32 MiB.

    .venv/bin/python bench/resumable.py [--mib 250] [--repeat 3] [--chunk-mib 5]
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from _common import (
    MIB,
    MemoryWatch,
    MotoServer,
    StreamedBody,
    fake_aws_env,
    fmt_mib,
    load_average,
    only_child,
    rate,
    vm_kib,
)

PDF_MAGIC = b"%PDF-1.7\n"
USER = "staff1"


def make_data(mib: int) -> bytes:
    return PDF_MAGIC + os.urandom(mib * MIB - len(PDF_MAGIC))


class Bench:
    def __init__(self, workdir: Path, max_bytes: int) -> None:
        import requests

        from tests.stack import LiveGateway, build_stack

        self.moto = MotoServer(workdir / "moto.log")
        self.stack = build_stack(f"sqlite:///{workdir / 'gateway.db'}", self.moto.endpoint,
                                 workdir, GATEWAY_MAX_UPLOAD_BYTES=str(max_bytes))
        self.gateway = LiveGateway(self.stack, workdir / "gunicorn.log", workers=1, threads=8)
        self.worker = only_child(self.gateway.proc.pid)
        self.http = requests.Session()
        self.http.trust_env = False
        self.auth = {"Authorization": f"Bearer {self.stack.users[USER].token}"}
        self.n = 0

    def close(self) -> None:
        self.http.close()
        self.gateway.stop()
        self.stack.close()
        self.moto.stop()

    def path(self, kind: str) -> str:
        self.n += 1
        return f"uploads/bench/{kind}-{self.n}.pdf"

    def put(self, data: bytes) -> None:
        resp = self.http.put(f"{self.gateway.url}/api/v1/files/{self.path('put')}",
                             data=StreamedBody(data), headers=self.auth)
        if resp.status_code != 201:
            raise RuntimeError(f"PUT answered {resp.status_code}: {resp.text[:300]}")

    def tus(self, data: bytes, chunk: int | None) -> None:
        tus = {**self.auth, "Tus-Resumable": "1.0.0"}
        meta = "path " + base64.b64encode(self.path("tus").encode()).decode()
        resp = self.http.post(f"{self.gateway.url}/api/v1/uploads", headers={
            **tus, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
        if resp.status_code != 201:
            raise RuntimeError(f"tus POST answered {resp.status_code}: {resp.text[:300]}")
        url = self.gateway.url + resp.headers["Location"]
        offset, view = 0, memoryview(data)
        step = chunk or len(data)
        while offset < len(data):
            resp = self.http.patch(url, data=StreamedBody(view[offset:offset + step]), headers={
                **tus, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            if resp.status_code != 204:
                raise RuntimeError(f"tus PATCH answered {resp.status_code}: {resp.text[:300]}")
            offset = int(resp.headers["Upload-Offset"])

    def timed(self, label: str, nbytes: int, run: Callable[[], object]) -> tuple[float, int]:
        start_rss = vm_kib(self.worker)
        with MemoryWatch({"gateway": self.worker}, interval=0.02) as watch:
            started = time.perf_counter()
            run()
            seconds = time.perf_counter() - started
        growth = max(0, watch.result["gateway"].peak - start_rss)
        mibs = rate(nbytes, seconds)
        print(f"  {label:16} {fmt_mib(nbytes):>10} {seconds:6.2f} s {mibs:7.1f} MiB/s  "
              f"(worker peak +{growth / 1024:.1f} MiB)", flush=True)
        return mibs, growth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=250, help="object size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each upload")
    parser.add_argument("--chunk-mib", type=int, default=5, help="PATCH size of the chunked run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 MiB, one repetition")
    args = parser.parse_args(argv)
    if args.quick:
        args.mib, args.repeat = 32, 1
    fake_aws_env()
    workdir = Path(tempfile.mkdtemp(prefix="gw-bench-resumable-"))
    load = load_average()
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs"
          + ("  (busy machine: the rates will be noisy)" if load > 0.5 else ""))
    data = make_data(args.mib)
    bench = Bench(workdir, args.mib * MIB + MIB)
    try:
        warm = data[:8 * MIB]
        bench.put(warm)
        bench.tus(warm, None)
        bench.tus(warm, 5 * MIB)
        chunk = args.chunk_mib * MIB
        best: dict[str, float] = {"put": 0.0, "one": 0.0, "chunks": 0.0}
        growth = 0
        print(f"{args.mib} MiB, {args.repeat} turns; S3: moto server")
        for turn in range(args.repeat):
            for name, label, run in (
                ("put", "PUT", lambda: bench.put(data)),
                ("one", "tus one PATCH", lambda: bench.tus(data, None)),
                ("chunks", f"tus {args.chunk_mib} MiB PATCHes", lambda: bench.tus(data, chunk)),
            ):
                mibs, grew = bench.timed(label, len(data), run)
                best[name] = max(best[name], mibs)
                growth = max(growth, grew)
    finally:
        bench.close()
    one, chunks = best["one"] / best["put"], best["chunks"] / best["put"]
    ok = one >= 0.9 and chunks >= 0.8 and growth <= 32 * 1024
    print(f"best: PUT {best['put']:.1f} MiB/s, tus one PATCH {best['one']:.1f} MiB/s, "
          f"tus {args.chunk_mib} MiB PATCHes {best['chunks']:.1f} MiB/s; "
          f"worker growth {growth / 1024:.1f} MiB")
    print(f"tus/PUT: one PATCH {one:.2f} (goal >= 0.9), {args.chunk_mib} MiB chunks {chunks:.2f} "
          f"(goal >= 0.8), worker memory growth {growth / 1024:.1f} MiB (goal <= 32): "
          f"{'goals met' if ok else 'goals NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
