"""Helpers shared by the benchmarks: moto's S3 server, process memory, a counting TCP relay.

Everything here reads ``/proc`` directly (Linux only) and adds no dependency.

* :func:`fake_aws_env` puts fake credentials in the environment, so nothing reaches real AWS.
* :class:`MotoServer` runs ``python -m moto.server`` in its own process, so its memory (it keeps
  whole objects) can be measured apart from the gateway's; :class:`RgwServer` brings up Ceph's
  RADOS Gateway on a single-node cluster (``tests/ceph.py``) when its packages are installed.
* :func:`vm_kib`, :func:`reset_peak`, :func:`children_of` and :class:`MemoryWatch` measure a
  process's resident memory and its peak; :func:`cpu_seconds` its CPU time
  (:func:`thread_cpu_seconds` each of its threads').
* :class:`CountingRelay` forwards a local port to another one and counts the bytes, and the HTTP
  messages, going each way.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MIB = 1 << 20
KIB = 1 << 10


def fake_aws_env() -> None:
    """Fake AWS credentials and a region; loopback never goes through a proxy."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    loopback = "127.0.0.1,localhost"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = (
        f"{no_proxy},{loopback}" if no_proxy else loopback
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# moto


class MotoServer:
    """moto's S3 server on a free loopback port, in its own process."""

    name = "moto"

    def __init__(self, log_path: Path) -> None:
        from tests.services import wait_for_http

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb")  # noqa: SIM115  (closed by stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        wait_for_http(self.endpoint + "/moto-api/", timeout=30, proc=self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class RgwServer:
    """Ceph's RADOS Gateway (one monitor, one memstore OSD, radosgw), as the tests start it.

    Its S3 user's keys are the fake credentials of :func:`fake_aws_env`, so boto3's usual
    chain reaches it. :meth:`available` says whether the packages are installed.
    """

    name = "rgw"

    #: the OSD keeps objects in memory, 1 GiB by default: the bench stores about 1.1 GiB
    MEMSTORE_BYTES = 3 << 30

    def __init__(self) -> None:
        from tests.ceph import CephCluster

        class BenchCluster(CephCluster):
            def write_conf(self) -> None:
                super().write_conf()
                conf = self.conf.read_text().replace(
                    "[osd]\n", f"[osd]\nmemstore_device_bytes = {RgwServer.MEMSTORE_BYTES}\n")
                self.conf.write_text(conf)

        self.cluster = BenchCluster()
        try:
            self.endpoint = self.cluster.start().endpoint
        except BaseException:
            self.cluster.stop()
            raise
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    @staticmethod
    def available() -> bool:
        from tests.ceph import missing_binaries

        return not missing_binaries()

    @property
    def pid(self) -> int:
        return self.cluster.procs["client.rgw"].pid

    def stop(self) -> None:
        self.cluster.stop()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate ``proc`` (and wait for it); kill it if it does not stop in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# Process memory


def vm_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A ``Vm*`` figure of ``/proc/PID/status`` in KiB (``VmRSS``, ``VmHWM``, ...)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field_name} not in /proc/{pid}/status")


def cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU time of ``pid`` (this process when None), in seconds.

    Read from the process's CPU clock (to the nanosecond); ``/proc/PID/stat`` counts in
    scheduler ticks (10 ms here), too coarse for the transfers of a fraction of a second that
    the benches compare.
    """
    if pid is None:
        return time.process_time()
    try:
        return time.clock_gettime(_cpu_clock(pid))
    except OSError:  # a kernel without process CPU clocks (or the process is gone)
        return _stat_seconds(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User plus system CPU time of each thread of ``pid``, in seconds, by thread id.

    Linux lets a process read only its own threads' CPU clocks; another's come from
    ``/proc/PID/task/TID/sched`` (to the microsecond) where the kernel has it, else from the
    thread's ``stat`` (in ticks).
    """
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        task = f"/proc/{pid}/task/{tid}"
        try:
            seconds[int(tid)] = _sched_runtime(f"{task}/sched") or _stat_seconds(f"{task}/stat")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return seconds


def _cpu_clock(pid: int) -> int:
    """The clock id of another process's CPU time, as Linux encodes it
    (``clock_getcpuclockid``: the inverted id, then ``CPUCLOCK_SCHED``)."""
    return ((~pid) << 3) | 2


def _sched_runtime(path: str) -> float | None:
    """``se.sum_exec_runtime`` (milliseconds) of a ``sched`` file, in seconds, if it has one."""
    try:
        with open(path, encoding="ascii") as sched:
            for line in sched:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1]) / 1000
    except PermissionError:
        return None
    return None


def _stat_seconds(path: str) -> float:
    with open(path, encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    """The one-minute load average."""
    return os.getloadavg()[0]


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` of ``pid`` to its current RSS (``clear_refs``); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    """The child processes of ``pid``, from ``/proc/PID/task/*/children``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def only_child(pid: int, timeout: float = 30.0) -> int:
    """The single child of ``pid`` (e.g. the one gunicorn worker), once there is exactly one."""
    deadline = time.monotonic() + timeout
    while True:
        kids = children_of(pid)
        if len(kids) == 1:
            return kids[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} has children {kids}, expected exactly one")
        time.sleep(0.05)


@dataclass
class Peak:
    """Resident memory of one process over a watched interval, in KiB."""

    start: int
    peak_sampled: int
    peak_hwm: int | None
    samples: int

    @property
    def peak(self) -> int:
        """The highest RSS seen: the kernel's high-water mark when it could be reset."""
        return max(self.peak_sampled, self.peak_hwm or 0)


class MemoryWatch:
    """Samples the RSS of some processes every ``interval`` seconds while in a ``with`` block.

    On entry each process's ``VmHWM`` is reset where the kernel allows it, so the peak read on
    exit also catches spikes shorter than the sampling interval.
    """

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.result: dict[str, Peak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)
        self._hwm_reset: dict[str, bool] = {}

    def __enter__(self) -> MemoryWatch:
        for name, pid in self.pids.items():
            self._hwm_reset[name] = reset_peak(pid)
            rss = vm_kib(pid)
            self.result[name] = Peak(start=rss, peak_sampled=rss, peak_hwm=None, samples=1)
        self._thread.start()
        return self

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                rss = vm_kib(pid)
            except (OSError, LookupError):
                continue
            peak = self.result[name]
            peak.samples += 1
            if rss > peak.peak_sampled:
                peak.peak_sampled = rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for name, pid in self.pids.items():
            if self._hwm_reset[name]:
                try:
                    self.result[name].peak_hwm = vm_kib(pid, "VmHWM")
                except (OSError, LookupError):
                    pass


# --------------------------------------------------------------------------------------------
# A counting TCP relay


@dataclass
class HttpMessage:
    """One HTTP/1.1 message seen by :class:`CountingRelay`."""

    start_line: str
    head_bytes: int
    body_bytes: int
    headers: dict[str, str] = field(default_factory=dict)


class _HttpCounter:
    """Splits one direction of an HTTP/1.1 connection into messages (heads and bodies).

    Bodies are delimited by Content-Length; a response to HEAD, a 1xx, 204 or 304 has none.
    Anything else (chunked encoding) stops the parsing: bytes are still counted, the message
    split is then marked incomplete.
    """

    def __init__(self, is_request: bool, methods: deque[str], out: list[HttpMessage]) -> None:
        self.is_request = is_request
        self.methods = methods
        self.out = out
        self.buffer = bytearray()
        self.body_left = 0
        self.current: HttpMessage | None = None
        self.unparsed = False

    def feed(self, data: bytes) -> None:
        if self.unparsed:
            return
        view = memoryview(data)
        while view:
            if self.body_left:
                take = min(self.body_left, len(view))
                assert self.current is not None
                self.current.body_bytes += take
                self.body_left -= take
                view = view[take:]
                continue
            self.buffer += view
            view = memoryview(b"")
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 4])
            rest = bytes(self.buffer[end + 4:])
            self.buffer = bytearray()
            self._head(head)
            view = memoryview(rest)

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        message = HttpMessage(lines[0], len(head), 0, headers)
        self.out.append(message)
        self.current = message
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.unparsed = True
            return
        length = int(headers.get("content-length", "0") or 0)
        if self.is_request:
            self.methods.append(lines[0].split(" ", 1)[0])
        else:
            method = self.methods.popleft() if self.methods else "GET"
            status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 else 200
            if method == "HEAD" or status < 200 or status in (204, 304):
                length = 0
        self.body_left = length


class CountingRelay:
    """Relays ``127.0.0.1:port`` to ``target_port`` and counts what goes each way.

    ``upstream_bytes`` are the bytes the target sent back (e.g. S3 → gateway); ``responses``
    and ``requests`` are the HTTP messages seen, heads and bodies counted apart.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._closed = False
        self.reset()
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def reset(self) -> None:
        """Forget what was counted so far (connections already open keep being counted)."""
        with self._lock:
            self.upstream_bytes = 0
            self.downstream_bytes = 0
            self.requests: list[HttpMessage] = []
            self.responses: list[HttpMessage] = []
            self.incomplete = False

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        methods: deque[str] = deque()
        to_server = threading.Thread(
            target=self._pump, args=(client, upstream, True, methods), daemon=True)
        to_server.start()
        self._pump(upstream, client, False, methods)
        to_server.join()
        client.close()
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, is_request: bool,
              methods: deque[str]) -> None:
        messages: list[HttpMessage] = []
        counter = _HttpCounter(is_request, methods, messages)
        buffer = bytearray(MIB)
        view = memoryview(buffer)
        try:
            while True:
                n = src.recv_into(buffer)
                if not n:
                    break
                with self._lock:
                    # parse first, so a request's method is known before its response arrives
                    before = len(messages)
                    counter.feed(view[:n])
                    new = messages[before:]
                    if is_request:
                        self.downstream_bytes += n
                        self.requests += new
                    else:
                        self.upstream_bytes += n
                        self.responses += new
                    self.incomplete |= counter.unparsed
                dst.sendall(view[:n])
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def payload_bytes(self) -> int:
        """Body bytes of the responses counted since :meth:`reset`."""
        with self._lock:
            return sum(m.body_bytes for m in self.responses)

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def fmt_mib(nbytes: float) -> str:
    """``nbytes`` in MiB with one decimal."""
    return f"{nbytes / MIB:.1f} MiB"


def rate(nbytes: int, seconds: float) -> float:
    """MiB/s."""
    return nbytes / MIB / seconds if seconds > 0 else float("inf")


def pieces(data: bytes | memoryview, size: int = MIB) -> Iterable[memoryview]:
    """``data`` as consecutive ``size`` slices, without copying."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start:start + size]


class StreamedBody:
    """A request body read from memory in 1 MiB pieces, with a known length (no chunking)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[memoryview]:
        return iter(pieces(self.data))
