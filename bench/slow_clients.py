"""Slow and idle clients against the shipped serving configuration and a synchronous one.

Run from the repository root: ``python bench/slow_clients.py [--seconds 20] [--idle 450]
[--half 450] [--downloads 100]``. The bench starts its own moto S3 server, seeds a gateway stack
(PostgreSQL, as in production, from ``initdb``; master-key file; see ``tests/stack.py``), stores a 100 KB file and a 4 MiB one, and then,
for each configuration in turn:

* **shipped**: ``gunicorn -c python:gateway.serve`` as it ships (gevent workers, header, body
  and send deadlines; ``gateway/serve.py``);
* **sync**: one synchronous gunicorn worker (``GATEWAY_WORKER_CLASS=sync``, one worker),

holds ``idle + half + downloads`` connections (1,000 by default, opened over the first two
seconds) open against it: idle ones that
send nothing, ones that sent half a request head and stall, and downloads of the 4 MiB file read
at 64 KiB/s each. A connection the server closes (its deadline passed, or the download ended)
is opened again at once, so the count holds for the whole run. Meanwhile a probe requests
``/healthz`` and the 100 KB file every 100 ms on a new connection each (a request that takes
longer than ``--probe-timeout`` counts as that long, and as a timeout) and checks the file's bytes.

Printed per configuration: the connections held and reopened, and the probe's p50/p99 for
``/healthz`` and for the file. The last line, e.g.
``slow_clients: shipped_p99=41ms sync_p99=5000ms goal=250ms ok``, takes the larger p99 of
the two probe requests.
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import KIB, MotoServer, fake_aws_env, load_average  # noqa: E402
from bench.audit import PostgresCluster  # noqa: E402

GOAL_MS = 250.0
READ_RATE = 64 * KIB  # bytes per second per slow download
TICK = 0.1
RAMP = 2.0  # seconds over which the held connections are opened
SMALL_PATH = "uploads/bench/small.pdf"
BIG_PATH = "uploads/bench/big.pdf"


def pdf(size: int, seed: int) -> bytes:
    import random

    rnd = random.Random(seed)
    head = b"%PDF-1.7\n"
    return head + rnd.randbytes(size - len(head))


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        sys.exit(f"slow_clients: the open-file limit {target} is below the {needed} needed")


@dataclass
class Held:
    kind: str
    sock: socket.socket
    last_read: float = 0.0


@dataclass
class Holder:
    """Keeps ``counts`` connections of each kind open against ``port`` from one thread."""

    port: int
    counts: dict[str, int]
    token: str
    reopened: dict[str, int] = field(default_factory=dict)
    downloaded: int = 0

    def __post_init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="holder", daemon=True)
        self.reopened = {kind: 0 for kind in self.counts}
        self.failed_opens = 0

    def _open(self, kind: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if kind == "download":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", self.port))
            if kind == "half":
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nUser-Agent: sl")
            elif kind == "download":
                sock.sendall((f"GET /api/v1/files/{BIG_PATH} HTTP/1.1\r\nHost: bench\r\n"
                              f"Authorization: Bearer {self.token}\r\n"
                              "Connection: close\r\n\r\n").encode())
        except OSError:
            sock.close()
            self.failed_opens += 1
            return
        sock.setblocking(False)
        held = Held(kind, sock, time.monotonic())
        if kind == "download":
            self.downloads.append(held)  # read on a clock, not when readable
        else:
            self.sel.register(sock, selectors.EVENT_READ, held)

    def start(self) -> None:
        """Open the connections over :data:`RAMP` seconds, the kinds interleaved."""
        self.downloads: list[Held] = []
        total = sum(self.counts.values())
        self.pending = [kind for i in range(total) for kind, n in self.counts.items()
                        if i * n // total != (i + 1) * n // total]
        self.per_tick = max(1, int(len(self.pending) * TICK / RAMP))
        self.thread.start()

    def held(self) -> int:
        return len(self.sel.get_map()) + len(self.downloads)

    def _reopen(self, held: Held) -> None:
        held.sock.close()
        self.reopened[held.kind] += 1
        self._open(held.kind)

    def _run(self) -> None:
        budget = int(READ_RATE * TICK)
        next_tick = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=max(0.0, next_tick - time.monotonic())):
                held: Held = key.data
                try:
                    data = held.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the server: open another of the same kind
                    self.sel.unregister(held.sock)
                    self._reopen(held)
            if time.monotonic() < next_tick:
                continue
            next_tick += TICK
            for kind in self.pending[:self.per_tick]:
                self._open(kind)
            del self.pending[:self.per_tick]
            for held in list(self.downloads):  # each reads 64 KiB/s at most
                try:
                    data = held.sock.recv(budget)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                self.downloaded += len(data)
                if not data:
                    self.downloads.remove(held)
                    self._reopen(held)
        for key in list(self.sel.get_map().values()):
            key.data.sock.close()
        for held in self.downloads:
            held.sock.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def probe(url: str, token: str, seconds: float, timeout: float, small: bytes) -> dict[str, list]:
    import requests

    result: dict[str, list] = {"healthz": [], "file": [], "timeouts": [], "wrong": []}
    digest = hashlib.sha256(small).hexdigest()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for kind, target, headers in (
            ("healthz", f"{url}/healthz", {}),
            ("file", f"{url}/api/v1/files/{SMALL_PATH}", {"Authorization": f"Bearer {token}"}),
        ):
            started = time.monotonic()
            try:
                resp = requests.get(target, headers=headers, timeout=timeout)
                elapsed = time.monotonic() - started
                if resp.status_code != 200 or (
                        kind == "file" and hashlib.sha256(resp.content).hexdigest() != digest):
                    result["wrong"].append(kind)
            except requests.RequestException:
                elapsed = timeout
                result["timeouts"].append(kind)
            result[kind].append(min(elapsed, timeout))
            result.setdefault("when", []).append((round(started - deadline + seconds, 2), kind,
                                                  round(elapsed * 1000)))
        time.sleep(max(0.0, TICK - (time.monotonic() - tick)))
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_config(name: str, stack, log: Path, extra_env: dict[str, str], workers: int,
               args: argparse.Namespace, small: bytes) -> float:
    from tests.stack import LiveGateway

    gw = LiveGateway(stack, log, workers=workers, threads=1, extra_env=extra_env)
    token = stack.users["staff1"].token
    counts = {"idle": args.idle, "half": args.half, "download": args.downloads}
    holder = Holder(gw.port, counts, token)
    try:
        if extra_env.get("GATEWAY_WORKER_CLASS") != "sync":
            probe(gw.url, token, 1.0, args.probe_timeout, small)  # every worker warmed up
        holder.start()
        time.sleep(RAMP + 1.0)  # the held connections are open and the downloads under way
        result = probe(gw.url, token, args.seconds, args.probe_timeout, small)
        held = holder.held()
    finally:
        holder.close()
        gw.stop()
    ms = {k: (pct(result[k], 50) * 1000, pct(result[k], 99) * 1000) for k in ("healthz", "file")}
    print(f"{name}: held {held}/{sum(counts.values())} connections "
          f"(idle {args.idle}, half-sent {args.half}, downloads at 64 KiB/s {args.downloads}; "
          f"reopened after the server closed them: {holder.reopened}, "
          f"{holder.failed_opens} could not connect; "
          f"{holder.downloaded / (1 << 20):.1f} MiB read by the slow downloads)")
    print(f"  probe /healthz   p50={ms['healthz'][0]:7.1f} ms  p99={ms['healthz'][1]:7.1f} ms  "
          f"({len(result['healthz'])} requests)")
    print(f"  probe 100 KB GET p50={ms['file'][0]:7.1f} ms  p99={ms['file'][1]:7.1f} ms  "
          f"({len(result['file'])} requests)")
    print(f"  timeouts (> {args.probe_timeout:.0f} s): {len(result['timeouts'])}, "
          f"wrong answers: {len(result['wrong'])}")
    if __import__("os").environ.get("BENCH_DEBUG"):
        print("  slowest:", sorted(result["when"], key=lambda w: -w[2])[:8])
    sys.stdout.flush()
    if result["wrong"]:
        raise SystemExit(f"slow_clients: {name} answered the probe wrongly: {result['wrong']}")
    return max(ms["healthz"][1], ms["file"][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="probe time per config")
    parser.add_argument("--idle", type=int, default=450)
    parser.add_argument("--half", type=int, default=450)
    parser.add_argument("--downloads", type=int, default=100)
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    args = parser.parse_args()
    total = args.idle + args.half + args.downloads
    raise_fd_limit(2 * total + 1024)  # the bench's sockets and, inherited, the gateway's
    fake_aws_env()
    print(f"load average {load_average():.2f} on {len(__import__('os').sched_getaffinity(0))} "
          f"cores; {total} connections held per configuration")

    from tests.stack import build_stack

    tmp = Path(tempfile.mkdtemp(prefix="gw-slow-"))
    moto = MotoServer(tmp / "moto.log")
    pg = PostgresCluster()
    stack = None
    try:
        stack = build_stack(pg.start(), moto.endpoint, tmp)
        small = pdf(100_000, 1)
        _seed(stack, tmp, small, pdf(4 << 20, 2))
        shipped = run_config("shipped (gevent workers, as configured in gateway/serve.py)",
                             stack, tmp / "shipped.log", {}, 2, args, small)
        sync = run_config("sync (one synchronous worker)", stack, tmp / "sync.log",
                          {"GATEWAY_WORKER_CLASS": "sync"}, 1, args, small)
    finally:
        if stack is not None:
            stack.close()
        moto.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    verdict = "ok" if shipped < GOAL_MS else "MISSED"
    print(f"slow_clients: shipped_p99={shipped:.0f}ms sync_p99={sync:.0f}ms "
          f"goal={GOAL_MS:.0f}ms {verdict}")


def _seed(stack, tmp: Path, small: bytes, big: bytes) -> None:
    import requests

    from tests.stack import LiveGateway

    gw = LiveGateway(stack, tmp / "seed.log", workers=1)
    try:
        auth = {"Authorization": f"Bearer {stack.users['staff1'].token}"}
        for path, data in ((SMALL_PATH, small), (BIG_PATH, big)):
            resp = requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=auth,
                                timeout=60)
            resp.raise_for_status()
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
