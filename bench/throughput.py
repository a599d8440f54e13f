"""Throughput, memory and ranged-read latency of the gateway against talking to S3 directly.

Run from the repository root: ``python bench/throughput.py [--mib 250] [--big-mib 1024]
[--repeat 5] [--engines moto,rgw] [--quick]``. For each S3 engine the bench starts its own
server: moto's (a subprocess), and Ceph's RADOS Gateway on a single-node cluster
(``tests/ceph.py``, as the test suite starts it) when Ceph's packages are installed, else it
says the RGW pass was skipped. It seeds a gateway stack (SQLite, master-key file,
organisations and API tokens; see ``tests/stack.py``) and runs gunicorn with one worker, so
the worker that serves every request is known.

On one S3 endpoint and one set of bytes (``%PDF-1.7`` then random bytes, made once), it measures:

* **upload**: boto3 ``upload_fileobj`` (default ``TransferConfig``: 8 MiB parts, 10 threads)
  against a gateway ``PUT`` streamed by ``requests`` from memory (Content-Length set, 1 MiB
  pieces); each rate is the best of ``--repeat`` runs, direct and gateway taking turns;
* **download**: a presigned ``GET`` read with ``requests`` against a gateway ``GET``, read the
  same way (best of ``--repeat``); the gateway's bytes are then read once more, untimed, and
  checked against the SHA-256 of the original;
* **memory**: the gunicorn worker's RSS (``/proc/PID/status``: ``VmRSS`` sampled every 20 ms,
  and ``VmHWM`` reset before each transfer so that shorter spikes count too) during every
  gateway transfer of a ``--mib`` and (moto only) a ``--big-mib`` object. The figure is the
  peak RSS over the worker's baseline after a small warm-up (the largest growth within one
  request is printed too). The S3 engine's RSS is reported apart;
* **ranged read, bytes** (moto): a second gateway, reaching S3 through a counting TCP relay,
  serves 1 MiB from the middle of the object; the bytes S3 sent it are counted (bodies apart
  from HTTP heads) and compared with what the format needs: the range's segments and header;
* **ranged read, time to first byte** (RGW; moto reads a whole object for every ranged GET):
  1 MiB at unaligned offsets in the middle half of the object, through the warm gateway and
  straight from S3 with the same ``Range``, taking turns; the medians and their ratio.

Two bounds are printed beside the goals, from figures of the same run, so that a missed goal
says whether the code or the machine stands in the way:

* **download ceiling**: each download's first body byte is timed, with every process's (and
  each worker thread's) CPU seconds until then. No schedule can end a gateway download sooner
  than its first byte plus all the CPU the worker, the engine and the client spent after it
  spread over every core, nor sooner than the worker's busiest thread's CPU after it; the
  best such bound, as a ratio to the best direct rate, is the most this code could reach on
  this machine with a perfect pipeline (``download=D(ceiling=C)``);
* **range floor**: the gateway's lightest request (``/healthz``) on a warm connection plus
  S3's time to the last byte of the range (the gateway releases nothing before the range's
  first segment, 1 MiB, has arrived and is authenticated), as a ratio to the direct first
  byte: what a gateway doing no work at all for the request would reach
  (``range_ttfb=G/D=R(floor=F)``).

``--quick`` is a smoke run: 32 MiB, no big object, one repetition.

Each transfer is printed with the CPU seconds the gateway worker, the S3 engine and the
client process spent meanwhile, which shows where the time goes. Everything shares the
machine's cores, so run it on a quiet machine: the first line prints the load average.

Each engine's pass ends with its own line (``throughput moto: ...``, ``throughput rgw:
...``); the last line sums both up: ``throughput: moto upload=U download=D(ceiling=C)
mem250=MMiB mem1024=MMiB range_fetch=FMiB/1MiB | rgw upload=U download=D(ceiling=C)
mem250=MMiB range_ttfb=Gms/Dms=R(floor=F)`` (ratios gateway/direct; ``docs/performance.md``
has measured ones).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    KIB,
    MIB,
    CountingRelay,
    MemoryWatch,
    MotoServer,
    RgwServer,
    StreamedBody,
    cpu_seconds,
    fake_aws_env,
    fmt_mib,
    load_average,
    only_child,
    rate,
    thread_cpu_seconds,
    vm_kib,
)

PDF_MAGIC = b"%PDF-1.7\n"
UPLOAD_GOAL = 0.9
DOWNLOAD_GOAL = 0.8
RGW_DOWNLOAD_GOAL = 0.9
TTFB_GOAL = 1.5
MEMORY_GOAL_MIB = 32
WARMUP_MIB = 24
USER = "staff1"


def make_data(mib: int) -> bytes:
    """``mib`` MiB starting with a PDF magic (so the gateway accepts it), random after that."""
    first = PDF_MAGIC + os.urandom(MIB - len(PDF_MAGIC))
    return b"".join([first] + [os.urandom(MIB) for _ in range(mib - 1)])


@dataclasses.dataclass
class Transfer:
    """One timed transfer, with the CPU time and memory of each process meanwhile."""

    side: str  # "direct" or "gateway"
    direction: str  # "upload" or "download"
    nbytes: int
    seconds: float
    cpu: dict[str, float]  # seconds of CPU: "gateway" (the worker), "moto", "client"
    worker_start_kib: int  # the worker's RSS when the transfer began
    worker_peak_kib: int  # ... and its peak during the transfer
    s3_peak_kib: int
    #: a download's seconds to its first body byte, and each process's CPU seconds until then
    first_byte_s: float | None = None
    cpu_at_first: dict[str, float] | None = None
    #: CPU seconds of the worker's busiest thread after that first byte
    busiest_after_first: float | None = None

    @property
    def mib_per_s(self) -> float:
        return rate(self.nbytes, self.seconds)

    @property
    def growth_kib(self) -> int:
        """Peak RSS growth of the worker during this transfer."""
        return max(0, self.worker_peak_kib - self.worker_start_kib)

    def line(self) -> str:
        cpu = ", ".join(f"{name} {sec:.2f} s" for name, sec in self.cpu.items())
        memory = (f"; worker RSS {kib_to_mib(self.worker_start_kib):.0f} MiB, "
                  f"peak +{kib_to_mib(self.growth_kib):.1f} MiB" if self.side == "gateway" else "")
        return (f"  {self.direction:8} {self.side:7} {fmt_mib(self.nbytes):>10} "
                f"{self.seconds:6.2f} s {self.mib_per_s:7.1f} MiB/s  (CPU: {cpu}{memory})")


class Bench:
    """The running pieces: the S3 engine, the gateway stack (SQLite unless ``db_url`` names
    another database), gunicorn with one worker, clients."""

    def __init__(self, workdir: Path, max_bytes: int, engine: str = "moto",
                 db_url: str | None = None) -> None:
        import boto3
        import requests
        from botocore.config import Config

        from tests.stack import LiveGateway, build_stack

        self.workdir = workdir = workdir / engine
        workdir.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.server = MotoServer(workdir / "moto.log") if engine == "moto" else RgwServer()
        try:
            self.stack = build_stack(db_url or f"sqlite:///{workdir / 'gateway.db'}",
                                     self.server.endpoint, workdir,
                                     GATEWAY_MAX_UPLOAD_BYTES=str(max_bytes))
            self.gateway = LiveGateway(self.stack, workdir / "gunicorn.log", workers=1,
                                       threads=8)
        except BaseException:
            self.server.stop()
            raise
        self.bucket = self.stack.settings.s3_bucket
        self.worker = only_child(self.gateway.proc.pid)
        self.pids = {"gateway": self.worker, engine: self.server.pid}
        self.s3 = boto3.session.Session().client(
            "s3", endpoint_url=self.server.endpoint,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only, never through a proxy
        self.auth = {"Authorization": f"Bearer {self.stack.users[USER].token}"}
        self.transfers: list[Transfer] = []
        self._first_byte: Callable[[], None] | None = None  # set by timed() for one transfer

    def close(self) -> None:
        self.http.close()
        self.gateway.stop()
        self.stack.close()
        self.server.stop()

    def timed(self, side: str, direction: str, nbytes: int, run: Callable[[], object]
              ) -> Transfer:
        """Run one transfer, watching the CPU time and memory of every process."""
        cpu_before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        client_before = cpu_seconds()

        def spent() -> dict[str, float]:
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in self.pids.items()}
            cpu["client"] = cpu_seconds() - client_before
            return cpu

        # at the first body byte: seconds, each process's CPU, each worker thread's CPU
        first: list[tuple[float, dict[str, float], dict[int, float]]] = []

        def first_byte() -> None:
            if not first:
                first.append((time.perf_counter() - started, spent(),
                              thread_cpu_seconds(self.worker)))

        self._first_byte = first_byte
        try:
            with MemoryWatch(self.pids, interval=0.02) as watch:
                started = time.perf_counter()
                run()
                seconds = time.perf_counter() - started
        finally:
            self._first_byte = None
        transfer = Transfer(side, direction, nbytes, seconds, spent(),
                            watch.result["gateway"].start, watch.result["gateway"].peak,
                            watch.result[self.engine].peak)
        if first:
            transfer.first_byte_s, transfer.cpu_at_first, threads = first[0]
            transfer.busiest_after_first = max(
                (cpu - threads.get(tid, 0.0)
                 for tid, cpu in thread_cpu_seconds(self.worker).items()), default=0.0)
        self.transfers.append(transfer)
        print(transfer.line(), flush=True)
        return transfer

    # -- transfers -------------------------------------------------------------------------

    def direct_put(self, key: str, data: bytes) -> None:
        self.s3.upload_fileobj(io.BytesIO(data), self.bucket, key)

    def gateway_put(self, path: str, data: bytes) -> None:
        resp = self.http.put(f"{self.gateway.url}/api/v1/files/{path}",
                             data=StreamedBody(data), headers=self.auth)
        if resp.status_code != 201:
            raise RuntimeError(f"gateway PUT answered {resp.status_code}: {resp.text[:300]}")

    def read(self, url: str, headers: dict[str, str], *, digest: bool = False
             ) -> tuple[int, str | None]:
        """GET ``url``, reading the body in 1 MiB pieces; (bytes, SHA-256 if asked)."""
        sha = hashlib.sha256() if digest else None
        total = 0
        with self.http.get(url, headers=headers, stream=True) as resp:
            if resp.status_code not in (200, 206):
                raise RuntimeError(f"GET answered {resp.status_code}: {resp.text[:300]}")
            for chunk in resp.iter_content(MIB):
                if not total and self._first_byte is not None:
                    self._first_byte()
                total += len(chunk)
                if sha is not None:
                    sha.update(chunk)
        return total, sha.hexdigest() if sha else None

    def direct_get(self, key: str) -> tuple[int, str | None]:
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=900)
        return self.read(url, {})

    def gateway_get(self, path: str, *, digest: bool = False, base_url: str | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, str | None]:
        return self.read(f"{base_url or self.gateway.url}/api/v1/files/{path}",
                         {**self.auth, **(headers or {})}, digest=digest)


def kib_to_mib(kib: float) -> float:
    return kib * KIB / MIB


def take_turns(repeat: int) -> Iterator[tuple[int, str]]:
    """(repetition, side): direct first on even repetitions, the gateway first on odd ones."""
    for rep in range(repeat):
        for side in (("direct", "gateway") if rep % 2 == 0 else ("gateway", "direct")):
            yield rep, side


def measure_object(bench: Bench, data: bytes, repeat: int, *, compare: bool
                   ) -> tuple[list[Transfer], str, str]:
    """Upload and download ``data`` ``repeat`` times each way; the gateway's copy is then read
    once more and its SHA-256 checked. Returns the transfers, the gateway's object path and
    the direct copy's key (``""`` without ``compare``), which the caller deletes."""
    size = len(data)
    mib = size // MIB
    first = len(bench.transfers)
    path = key = ""
    for rep, side in take_turns(repeat):
        if side == "direct" and compare:
            if key:
                bench.s3.delete_object(Bucket=bench.bucket, Key=key)
            key = f"direct/bench-{mib}-{rep}.pdf"
            bench.timed("direct", "upload", size, lambda: bench.direct_put(key, data))
        elif side == "gateway":
            path = f"uploads/bench/object-{mib}-{rep}.pdf"
            bench.timed("gateway", "upload", size, lambda: bench.gateway_put(path, data))
    for _rep, side in take_turns(repeat):
        if side == "direct" and compare:
            bench.timed("direct", "download", size, lambda: bench.direct_get(key))
        elif side == "gateway":
            bench.timed("gateway", "download", size, lambda: bench.gateway_get(path))
    digest = hashlib.sha256(data).hexdigest()
    result: dict[str, tuple[int, str | None]] = {}

    def verify() -> None:
        result["got"] = bench.gateway_get(path, digest=True)

    print("  (the next read hashes what it receives, so it is not counted in the best rates)")
    check = bench.timed("gateway", "download", size, verify)
    check.side = "gateway+sha"  # memory counts, rate does not
    if result["got"] != (size, digest):
        raise SystemExit(f"the gateway returned other bytes for {path}: {result['got']}")
    return bench.transfers[first:], path, key


def best_rate(transfers: list[Transfer], side: str, direction: str) -> float:
    return max(t.mib_per_s for t in transfers if t.side == side and t.direction == direction)


def worst_growth(transfers: list[Transfer], direction: str | None = None) -> int:
    """The largest per-transfer growth of the worker's RSS, in KiB."""
    return max(t.growth_kib for t in transfers if t.side.startswith("gateway")
               and (direction is None or t.direction == direction))


def ranged_read(bench: Bench, data: bytes, path: str, range_bytes: int) -> int:
    """Read ``range_bytes`` from the middle of ``path`` through a second gateway whose S3
    traffic goes through a counting relay; returns the body bytes S3 sent it."""
    from gateway.crypto import envelope
    from tests.stack import LiveGateway

    relay = CountingRelay(bench.server.port)
    stack = dataclasses.replace(bench.stack,
                                env={**bench.stack.env, "GATEWAY_S3_ENDPOINT_URL": relay.endpoint})
    counted = LiveGateway(stack, bench.workdir / "gunicorn-relay.log", workers=1, threads=4)
    try:
        # a range that does not start on a segment boundary, so it spans two segments
        start = len(data) // 2 + 12_345
        end = start + range_bytes - 1
        relay.reset()
        started = time.perf_counter()
        nbytes, got = bench.gateway_get(path, digest=True, base_url=counted.url,
                                        headers={"Range": f"bytes={start}-{end}"})
        seconds = time.perf_counter() - started
        time.sleep(0.2)  # let the relay count the last bytes it forwarded
        if nbytes != range_bytes or got != hashlib.sha256(data[start:end + 1]).hexdigest():
            raise SystemExit("the gateway's ranged read returned other bytes")
        print(f"range: bytes {start}-{end} ({fmt_mib(range_bytes)}) of the {fmt_mib(len(data))} "
              f"object in {seconds * 1000:.0f} ms (first request of a fresh worker); the "
              f"gateway asked S3 for:")
        for request, response in zip(relay.requests, relay.responses):
            asked = request.headers.get("range", "the whole object")
            print(f"  {request.start_line.split(' ', 1)[0]} Range: {asked} -> "
                  f"{response.start_line.split(' ', 1)[1]}, body {response.body_bytes} B, "
                  f"HTTP head {response.head_bytes} B")
        payload = relay.payload_bytes()
        if relay.incomplete:
            print("  (a chunked response could not be split: the figure below is the total)")
            payload = relay.upstream_bytes
        plan = envelope.plan_range(len(data), envelope.DEFAULT_SEGMENT_SIZE, start, end)
        touched = plan.last_segment - plan.first_segment + 1
        needed = envelope.HEADER_SIZE + plan.ciphertext_length
        segment = envelope.DEFAULT_SEGMENT_SIZE + envelope.TAG_SIZE
        bound = range_bytes + 2 * segment + envelope.HEADER_SIZE
        print(f"range: S3 sent the gateway {payload} B of bodies ({fmt_mib(payload)}), "
              f"{relay.upstream_bytes} B with the HTTP heads, in {len(relay.responses)} "
              f"responses; the header and the {touched} segments the range touches are "
              f"{needed} B; goal <= range + 2 segments + header = {bound} B: "
              f"{'met' if payload <= bound else 'MISSED'}")
        return payload
    finally:
        counted.stop()
        relay.close()


def first_byte_ms(bench: Bench, url: str, headers: dict[str, str], expect: bytes
                  ) -> tuple[float, float]:
    """Milliseconds from sending a GET to holding the first byte of its body, and to holding
    all of it (the body is compared with ``expect``)."""
    started = time.perf_counter()
    with bench.http.get(url, headers=headers, stream=True) as resp:
        if resp.status_code != 206:
            raise RuntimeError(f"ranged GET answered {resp.status_code}: {resp.text[:300]}")
        first = resp.raw.read(1)
        elapsed = time.perf_counter() - started
        rest = resp.raw.read()
        whole = time.perf_counter() - started
    if first + rest != expect:
        raise SystemExit("a ranged read returned other bytes")
    return elapsed * 1000, whole * 1000


def round_trip_ms(bench: Bench) -> float:
    """Milliseconds for the gateway's lightest request (``/healthz``) on a warm connection."""
    started = time.perf_counter()
    resp = bench.http.get(f"{bench.gateway.url}/healthz")
    resp.raise_for_status()
    return (time.perf_counter() - started) * 1000


def range_ttfb(bench: Bench, data: bytes, path: str, key: str, range_bytes: int,
               rounds: int = 15) -> tuple[float, float, float]:
    """Median time to the first byte of ``range_bytes`` from the middle half of the object, through
    the (warm) gateway and straight from S3 (a presigned GET with the same Range), taking
    turns; a different unaligned offset each round. Returns (gateway ms, direct ms, floor ms).

    The floor is what no gateway that authenticates before it releases can beat here: its
    own lightest round trip (``/healthz``) plus S3's time to the last byte of the range (the
    gateway holds a whole segment, 1 MiB, before it releases its first byte)."""
    import statistics

    url = bench.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bench.bucket, "Key": key}, ExpiresIn=900)
    gateway_url = f"{bench.gateway.url}/api/v1/files/{path}"
    times: dict[str, list[float]] = {"gateway": [], "direct": [], "direct_last": [],
                                     "round_trip": []}
    for i in range(rounds + 1):
        start = len(data) // 4 + (12_345 + i * 3 * MIB) % (len(data) // 2)
        end = start + range_bytes - 1
        rng = {"Range": f"bytes={start}-{end}"}
        sides = [("direct", url, rng), ("gateway", gateway_url, {**bench.auth, **rng})]
        for side, target, headers in sides if i % 2 == 0 else sides[::-1]:
            ms, last_ms = first_byte_ms(bench, target, headers, data[start:end + 1])
            if i:  # the first round warms both paths up
                times[side].append(ms)
                if side == "direct":
                    times["direct_last"].append(last_ms)
        trip = round_trip_ms(bench)
        if i:
            times["round_trip"].append(trip)
    gateway, direct = statistics.median(times["gateway"]), statistics.median(times["direct"])
    trip, last = statistics.median(times["round_trip"]), statistics.median(times["direct_last"])
    floor = trip + last
    print(f"range_ttfb: {fmt_mib(range_bytes)} from the middle of {fmt_mib(len(data))}, median "
          f"of {rounds}: gateway {gateway:.1f} ms, direct {direct:.1f} ms, ratio "
          f"{gateway / direct:.2f} (goal <= {TTFB_GOAL}: "
          f"{'met' if gateway / direct <= TTFB_GOAL else 'MISSED'}); gateway "
          f"{min(times['gateway']):.1f} to {max(times['gateway']):.1f} ms, direct "
          f"{min(times['direct']):.1f} to {max(times['direct']):.1f} ms")
    print(f"range_ttfb floor: {floor:.1f} ms = the gateway's lightest round trip (/healthz) "
          f"{trip:.1f} ms + S3's last byte of the range {last:.1f} ms (medians): "
          f"{floor / direct:.2f} x direct, before any work of the request itself")
    return gateway, direct, floor


def memory_lines(label: str, transfers: list[Transfer], baseline: int) -> int:
    """Print the worker's memory during ``transfers``; return its peak growth over ``baseline``.

    The peak over the warm baseline is the figure that counts: a worker keeps the heap a
    request made it grow, so the next request's growth alone would read close to zero.
    """
    up, down = worst_growth(transfers, "upload"), worst_growth(transfers, "download")
    peak = max(t.worker_peak_kib for t in transfers if t.side.startswith("gateway"))
    print(f"memory, {label}: worker peak RSS {kib_to_mib(peak):.0f} MiB, "
          f"+{kib_to_mib(peak - baseline):.1f} MiB over its warm baseline (largest growth "
          f"within one request: upload +{kib_to_mib(up):.1f} MiB, download "
          f"+{kib_to_mib(down):.1f} MiB)")
    return max(0, peak - baseline)


def download_ceiling(transfers: list[Transfer], direct_rate: float) -> float:
    """The download ratio no schedule of the CPU work measured could beat on this machine.

    A gateway download cannot end before its first byte has reached the client. After that,
    all the CPU the worker, the engine and the client spent until the end must fit on the
    machine's cores, and no thread can finish before its own CPU time has passed: ``first
    byte + max(CPU after it / cores, the worker's busiest thread after it)`` is a lower bound
    of the download's time. The best (shortest) bound over the gateway's downloads, as a
    ratio to the best direct rate, is how much of the gap is the CPU these processes need
    per byte and how it is spread over threads (to change only by less work, or work on more
    threads) rather than how they happen to be scheduled (which a better pipeline could win).
    """
    cores = os.cpu_count() or 1
    bounds = []
    for t in transfers:
        if t.side != "gateway" or t.direction != "download" or t.cpu_at_first is None:
            continue
        after = sum(t.cpu[name] - t.cpu_at_first.get(name, 0.0) for name in t.cpu)
        bounds.append((t.first_byte_s or 0.0) + max(after / cores, t.busiest_after_first or 0.0))
    if not bounds:
        return float("nan")
    return rate(transfers[0].nbytes, min(bounds)) / direct_rate


def compare_rates(transfers: list[Transfer], download_goal: float
                  ) -> tuple[float, float, float]:
    """Print the best rates of both sides; return the (upload, download) ratios and the
    download's :func:`download_ceiling`."""
    rates = {(side, way): best_rate(transfers, side, way)
             for side in ("direct", "gateway") for way in ("upload", "download")}
    up = rates["gateway", "upload"] / rates["direct", "upload"]
    down = rates["gateway", "download"] / rates["direct", "download"]
    for way, ratio, goal in (("upload", up, UPLOAD_GOAL), ("download", down, download_goal)):
        print(f"{way:8} best: direct {rates['direct', way]:6.1f} MiB/s, gateway "
              f"{rates['gateway', way]:6.1f} MiB/s; ratio gateway/direct {ratio:.3f} "
              f"(goal >= {goal}: {'met' if ratio >= goal else 'MISSED'})")
    print("download: the gateway's bytes have the original's SHA-256")
    ceiling = download_ceiling([t for t in transfers if t.nbytes == transfers[0].nbytes],
                               rates["direct", "download"])
    firsts = [t.first_byte_s * 1000 for t in transfers if t.side == "gateway"
              and t.direction == "download" and t.first_byte_s is not None]
    print(f"download ceiling: {ceiling:.2f} of direct on {os.cpu_count()} cores (the gateway's "
          f"first byte after {min(firsts):.0f} to {max(firsts):.0f} ms, then the CPU the "
          f"worker, the engine and the client spent until the end, spread over every core, or "
          f"the worker's busiest thread's, if longer: no schedule of that work ends sooner)")
    return up, down, ceiling


def warm_up(bench: Bench, data: bytes) -> int:
    """Warm both paths up (imports, clients, connection pools, part threads), untimed;
    returns the worker's RSS afterwards (the memory baseline)."""
    warm = data[:WARMUP_MIB * MIB]
    bench.direct_put("direct/warmup.pdf", warm)
    bench.direct_get("direct/warmup.pdf")
    bench.gateway_put("uploads/bench/warmup.pdf", warm)
    bench.gateway_get("uploads/bench/warmup.pdf", headers={"Range": "bytes=100-200"})
    bench.gateway_get("uploads/bench/warmup.pdf")
    bench.s3.delete_object(Bucket=bench.bucket, Key="direct/warmup.pdf")
    return vm_kib(bench.worker)


def run_moto(args: argparse.Namespace, workdir: Path, data: bytes) -> str:
    """The moto pass: rates, memory (also with the big object), the ranged read's bytes."""
    bench = Bench(workdir, max(args.mib, args.big_mib) * MIB + MIB, "moto")
    try:
        worker = bench.worker
        print(f"== moto: gateway gunicorn, 1 worker (pid {worker}), 8 threads; S3: moto server "
              f"(pid {bench.server.pid})")
        cold = vm_kib(worker)
        baseline = warm_up(bench, data)
        print(f"memory: worker RSS {kib_to_mib(cold):.1f} MiB after start, "
              f"{kib_to_mib(baseline):.1f} MiB after a {WARMUP_MIB} MiB warm-up (the baseline)")

        runs = f"{args.repeat} runs" if args.repeat > 1 else "1 run"
        print(f"{args.mib} MiB object, {runs} each way, direct and gateway taking turns:")
        transfers, path, key = measure_object(bench, data, args.repeat, compare=True)
        bench.s3.delete_object(Bucket=bench.bucket, Key=key)
        up, down, ceiling = compare_rates(transfers, DOWNLOAD_GOAL)
        mem = {args.mib: memory_lines(f"{args.mib} MiB", transfers, baseline)}

        range_bytes = args.range_mib * MIB
        payload = ranged_read(bench, data, path, range_bytes)

        if args.big_mib:
            started = time.perf_counter()
            big_data = make_data(args.big_mib)
            print(f"data: {args.big_mib} MiB made in {time.perf_counter() - started:.1f} s")
            print(f"{args.big_mib} MiB object, through the gateway only:")
            big, _, _ = measure_object(bench, big_data, 1, compare=False)
            del big_data
            mem[args.big_mib] = memory_lines(f"{args.big_mib} MiB", big, baseline)

        worst = max(mem.values())
        flat = ""
        if args.big_mib:
            change = kib_to_mib(mem[args.big_mib] - mem[args.mib])
            flat = f"; {args.big_mib} MiB against {args.mib} MiB: {change:+.1f} MiB"
        print(f"memory goal <= {MEMORY_GOAL_MIB} MiB growth: "
              f"{'met' if kib_to_mib(worst) <= MEMORY_GOAL_MIB else 'MISSED'}{flat}")
        s3_peak = max(t.s3_peak_kib for t in bench.transfers)
        print(f"memory: moto server peak RSS {kib_to_mib(s3_peak):.0f} MiB (the S3 stand-in "
              f"keeps whole objects in memory; not the gateway)")
        summary = " ".join(
            [f"upload={up:.2f}", f"download={down:.2f}(ceiling={ceiling:.2f})"]
            + [f"mem{size}={kib_to_mib(kib):.0f}MiB" for size, kib in mem.items()]
            + [f"range_fetch={payload / MIB:.1f}MiB/{args.range_mib}MiB"])
        print(f"throughput moto: {summary}", flush=True)
        return summary
    finally:
        bench.close()


def run_rgw(args: argparse.Namespace, workdir: Path, data: bytes) -> str:
    """The Ceph RGW pass: rates, memory, and the ranged read's time to first byte."""
    started = time.perf_counter()
    bench = Bench(workdir, args.mib * MIB + MIB, "rgw")
    try:
        worker = bench.worker
        print(f"== rgw: Ceph cluster and gateway up in {time.perf_counter() - started:.1f} s; "
              f"gunicorn, 1 worker (pid {worker}), 8 threads; S3: radosgw (pid "
              f"{bench.server.pid}, one memstore OSD)")
        baseline = warm_up(bench, data)
        runs = f"{args.repeat} runs" if args.repeat > 1 else "1 run"
        print(f"{args.mib} MiB object, {runs} each way, direct and gateway taking turns:")
        transfers, path, key = measure_object(bench, data, args.repeat, compare=True)
        up, down, ceiling = compare_rates(transfers, RGW_DOWNLOAD_GOAL)
        mem = memory_lines(f"{args.mib} MiB", transfers, baseline)
        gateway_ms, direct_ms, floor_ms = range_ttfb(bench, data, path, key, args.range_mib * MIB)
        bench.s3.delete_object(Bucket=bench.bucket, Key=key)
        summary = (f"upload={up:.2f} download={down:.2f}(ceiling={ceiling:.2f}) "
                   f"mem{args.mib}={kib_to_mib(mem):.0f}MiB "
                   f"range_ttfb={gateway_ms:.1f}ms/{direct_ms:.1f}ms={gateway_ms / direct_ms:.2f}"
                   f"(floor={floor_ms / direct_ms:.2f})")
        print(f"throughput rgw: {summary}", flush=True)
        return summary
    finally:
        bench.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=250, help="object size in MiB")
    parser.add_argument("--big-mib", type=int, default=1024,
                        help="size of the big object (gateway only, for memory) in MiB; 0 skips")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs of each transfer (the best counts: the machine's "
                             "noise only ever slows a run down)")
    parser.add_argument("--range-mib", type=int, default=1, help="size of the ranged read")
    parser.add_argument("--engines", default="moto,rgw",
                        help="S3 engines to run against, of moto and rgw (rgw is skipped, and "
                             "said so, when Ceph's packages are missing)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 32 MiB, no big object, one repetition")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mib, args.big_mib, args.repeat = 32, 0, 1
    if args.repeat < 1 or args.range_mib < 1:
        parser.error("--repeat and --range-mib must be at least 1")
    if args.mib < WARMUP_MIB or args.mib < 2 * args.range_mib:
        parser.error(f"--mib must be at least {WARMUP_MIB} and twice --range-mib")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or set(engines) - {"moto", "rgw"}:
        parser.error("--engines takes moto, rgw or both")

    fake_aws_env()
    workdir = Path(tempfile.mkdtemp(prefix="gw-bench-throughput-"))
    load = load_average()
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs"
          + ("  (busy machine: the rates will be noisy)" if load > 0.5 else ""))
    started = time.perf_counter()
    data = make_data(args.mib)
    print(f"data: {args.mib} MiB ({PDF_MAGIC!r} then random bytes), made in "
          f"{time.perf_counter() - started:.1f} s")
    results: dict[str, str] = {}
    try:
        if "moto" in engines:
            results["moto"] = run_moto(args, workdir, data)
        if "rgw" in engines:
            if RgwServer.available():
                results["rgw"] = run_rgw(args, workdir, data)
            else:
                print("== rgw: skipped, Ceph is not installed (apt-get install -y "
                      "--no-install-recommends ceph-mon ceph-osd radosgw ceph-common)")
                results["rgw"] = "skipped"
        print(f"load average {load_average():.2f} at the end (the bench itself adds up to 2)")
        print("throughput: " + " | ".join(f"{name} {line}" for name, line in results.items()))
        return 0
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
