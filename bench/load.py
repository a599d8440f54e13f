"""A mixed load on the shipped gateway: PostgreSQL, moto's S3 server, gunicorn as configured.

Run from the repository root: ``python bench/load.py [--seconds 60] [--clients 32]
[--max-mib 50]``. The bench starts its own PostgreSQL cluster (``initdb``) and moto server,
seeds a stack (``tests/stack.py``), runs gunicorn as it ships (``gateway/serve.py``: gevent
workers, one per core up to four) and lets ``--clients`` threads send, for ``--seconds``:

* ``upload``: a PUT of 1 KB to ``--max-mib`` MB (sizes log-uniform, so most are small),
* ``download``: a full GET of an object stored before, its SHA-256 checked,
* ``range``: a GET of a random range of one, its bytes checked,
* ``list``: a listing of the folder,
* ``link``: a signed GET link issued and then followed without credentials, its SHA-256 checked.

Afterwards it runs ``gateway audit verify`` and counts the audit rows written during the run:
the count must equal the requests made times the rows each kind writes (measured one request
at a time before the run). Printed: requests/s, p50/p99 per kind, MiB/s each way, the gateway's
CPU time (so requests and MiB per core-second), and the error count. The last line, e.g.
``load: 41.2 req/s errors=0 sha_ok=1 audit_rows=ok verify=ok``.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    MIB,
    MotoServer,
    children_of,
    cpu_seconds,
    fake_aws_env,
    load_average,
)
from bench.audit import PostgresCluster  # noqa: E402

PDF = b"%PDF-1.7\n"
KINDS = {"upload": 20, "download": 30, "range": 20, "list": 15, "link": 15}
FOLDER = "uploads/load"


class Load:
    def __init__(self, url: str, token: str, data: bytes, max_size: int, seed: int) -> None:
        self.url, self.token, self.data, self.max_size = url, token, data, max_size
        self.view = memoryview(data)  # uploads send slices without copying
        self.auth = {"Authorization": f"Bearer {token}"}
        self.lock = threading.Lock()
        self.stored: list[tuple[str, int]] = []  # (path, size): the bytes are data[:size]
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.sha_checked = 0
        self.bytes_up = self.bytes_down = 0
        self._digests: dict[int, str] = {}
        self._n = 0
        self.seed = seed

    def digest(self, size: int) -> str:
        with self.lock:
            if size not in self._digests:
                self._digests[size] = hashlib.sha256(self.data[:size]).hexdigest()
            return self._digests[size]

    def _path(self) -> str:
        with self.lock:
            self._n += 1
            return f"{FOLDER}/c{self._n:06d}.pdf"

    def _size(self, rnd: random.Random) -> int:
        return int(math.exp(rnd.uniform(math.log(1000), math.log(self.max_size))))

    def one(self, kind: str, rnd: random.Random, http) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        error = None
        if kind == "upload" or not self.stored:
            kind = "upload"
            size, path = self._size(rnd), self._path()
            resp = http.put(f"{self.url}/api/v1/files/{path}", data=self.view[:size],
                            headers=self.auth, timeout=300)
            if resp.status_code != 201:
                error = f"upload {resp.status_code} {resp.text[:120]}"
            elif resp.json()["sha256"] != self.digest(size):
                error = "upload: wrong sha256 in the answer"
            else:
                with self.lock:
                    self.stored.append((path, size))
                    self.bytes_up += size
        elif kind in ("download", "link"):
            with self.lock:
                path, size = rnd.choice(self.stored)
            if kind == "link":
                issued = http.post(f"{self.url}/api/v1/links", headers=self.auth, timeout=60,
                                   json={"path": path, "method": "GET"})
                if issued.status_code != 201:
                    error = f"link issue {issued.status_code}"
                target, headers = (issued.json()["url"], {}) if not error else (None, {})
            else:
                target, headers = f"{self.url}/api/v1/files/{path}", self.auth
            if target:
                resp = http.get(target, headers=headers, timeout=300)
                if resp.status_code != 200:
                    error = f"{kind} {resp.status_code}"
                elif hashlib.sha256(resp.content).hexdigest() != self.digest(size):
                    error = f"{kind}: wrong SHA-256"
                else:
                    with self.lock:
                        self.sha_checked += 1
                        self.bytes_down += size
        elif kind == "range":
            with self.lock:
                path, size = rnd.choice(self.stored)
            start = rnd.randrange(size)
            end = min(size - 1, start + rnd.randrange(1, 2 * MIB))
            resp = http.get(f"{self.url}/api/v1/files/{path}", timeout=300,
                            headers={**self.auth, "Range": f"bytes={start}-{end}"})
            if resp.status_code != 206 or resp.content != self.data[start:end + 1]:
                error = f"range {resp.status_code}"
            else:
                with self.lock:
                    self.bytes_down += end + 1 - start
        else:
            resp = http.get(f"{self.url}/api/v1/files", params={"prefix": FOLDER + "/"},
                            headers=self.auth, timeout=60)
            if resp.status_code != 200:
                error = f"list {resp.status_code}"
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[kind].append(elapsed)
            if error:
                self.errors.append(error)

    def client(self, n: int, deadline: float) -> None:
        import requests

        rnd = random.Random(self.seed * 1000 + n)
        kinds, weights = list(KINDS), list(KINDS.values())
        with requests.Session() as http:
            while time.monotonic() < deadline:
                kind = rnd.choices(kinds, weights)[0]
                try:
                    self.one(kind, rnd, http)
                except Exception as exc:  # noqa: BLE001  (counted, the run goes on)
                    with self.lock:
                        self.latency[kind].append(float("nan"))
                        self.errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:200])


def audit_rows(services) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from gateway.db.models import AuditEvent

    with services.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)))


def rows_per_kind(load: Load, services) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The audit rows one request of each kind writes, measured one at a time."""
    import requests

    rows: dict[str, int] = {}
    rnd = random.Random(0)
    with requests.Session() as http:
        for kind in ("upload", "download", "range", "list", "link"):
            before = audit_rows(services)
            load.one(kind, rnd, http)
            time.sleep(0.2)
            rows[kind] = audit_rows(services) - before
    if load.errors:
        raise SystemExit(f"load: the calibration failed: {load.errors}")
    load.latency.clear()
    load.bytes_up = load.bytes_down = load.sha_checked = 0
    return rows


def pct(values: list[float], q: int) -> float:
    values = [v for v in values if not math.isnan(v)]
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def gateway_cpu(master: int) -> float:
    total = cpu_seconds(master)
    for pid in children_of(master):
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-mib", type=int, default=50, help="largest upload, in MB")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers (default: as shipped)")
    args = parser.parse_args()
    fake_aws_env()
    from gateway.serve import workers as shipped_workers
    from tests.stack import LiveGateway, build_stack

    workers = args.workers or shipped_workers
    print(f"load average {load_average():.2f} on {len(os.sched_getaffinity(0))} cores; "
          f"{args.clients} clients for {args.seconds:.0f} s; {workers} gevent workers")
    tmp = Path(tempfile.mkdtemp(prefix="gw-load-"))
    moto = MotoServer(tmp / "moto.log")
    pg = PostgresCluster()
    stack = gw = None
    try:
        stack = build_stack(pg.start(), moto.endpoint, tmp)
        gw = LiveGateway(stack, tmp / "gunicorn.log", workers=workers)
        max_size = args.max_mib * 1000 * 1000
        data = PDF + os.urandom(max_size - len(PDF))
        load = Load(gw.url, stack.users["staff1"].token, data, max_size, seed=1)
        per_kind = rows_per_kind(load, stack.services)
        print("audit rows per request: " + ", ".join(f"{k}={v}" for k, v in per_kind.items()))
        rows_before = audit_rows(stack.services)
        cpu_before = gateway_cpu(gw.proc.pid)
        moto_before = cpu_seconds(moto.pid)
        client_before = cpu_seconds()
        started = time.monotonic()
        deadline = started + args.seconds
        clients = [threading.Thread(target=load.client, args=(n, deadline))
                   for n in range(args.clients)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        elapsed = time.monotonic() - started
        cpu = gateway_cpu(gw.proc.pid) - cpu_before
        moto_cpu = cpu_seconds(moto.pid) - moto_before
        client_cpu = cpu_seconds() - client_before
        time.sleep(0.5)
        rows = audit_rows(stack.services) - rows_before
        verify = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify"],
                                env=dict(os.environ, **stack.env), capture_output=True,
                                text=True, timeout=600, cwd=Path(__file__).parent.parent)
    finally:
        if gw is not None:
            gw.stop()
        if stack is not None:
            stack.close()
        moto.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    counts = {k: len(v) for k, v in load.latency.items()}
    total = sum(counts.values())
    expected_rows = sum(per_kind[k] * n for k, n in counts.items())
    print(f"{total} requests in {elapsed:.1f} s: {total / elapsed:.1f} requests/s; "
          f"{load.bytes_up / MIB / elapsed:.1f} MiB/s up, {load.bytes_down / MIB / elapsed:.1f} "
          f"MiB/s down")
    for kind in KINDS:
        values = load.latency.get(kind, [])
        print(f"  {kind:<9} n={len(values):5d}  p50={pct(values, 50) * 1000:8.1f} ms  "
              f"p99={pct(values, 99) * 1000:8.1f} ms")
    print(f"gateway CPU {cpu:.1f} s ({cpu / elapsed:.2f} cores busy): "
          f"{total / cpu:.1f} requests and {(load.bytes_up + load.bytes_down) / MIB / cpu:.1f} "
          f"MiB per CPU-second; moto {moto_cpu:.1f} s, the clients {client_cpu:.1f} s")
    print(f"errors: {len(load.errors)}" + (f" (first: {load.errors[:5]})" if load.errors else ""))
    print(f"downloads with their SHA-256 checked: {load.sha_checked}")
    rows_ok = rows == expected_rows
    print(f"audit rows written: {rows}, expected {expected_rows} "
          f"({'equal' if rows_ok else 'DIFFERENT'})")
    verify_ok = verify.returncode == 0
    print(f"gateway audit verify: exit {verify.returncode}: "
          f"{(verify.stdout or verify.stderr).strip().splitlines()[-1:]}")
    print(f"load: {total / elapsed:.1f} req/s errors={len(load.errors)} "
          f"sha_checked={load.sha_checked} audit_rows={'ok' if rows_ok else 'MISMATCH'} "
          f"verify={'ok' if verify_ok else 'FAILED'} "
          f"per_core={total / cpu:.1f}req/s,{(load.bytes_up + load.bytes_down) / MIB / cpu:.1f}"
          f"MiB/s")


if __name__ == "__main__":
    main()
