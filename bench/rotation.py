"""Rewrap rate for small and large objects: a rewrap must not depend on object size.

Run from the repository root: ``python bench/rotation.py [--small 300] [--large 100]
[--large-mib 10] [--rounds 3]``. The bench starts its own moto S3 server (a subprocess),
builds a gateway stack on an SQLite catalog (see ``tests/stack.py``) and uploads, through the
object service, ``--small`` objects of 1 KiB into one organisation and ``--large`` objects of
``--large-mib`` MiB into another. Then, ``--rounds`` times, it rotates both organisations' keys
(``keyring.create_org_key``) and times ``gateway.rotation.rewrap`` of each organisation, the
two sets taking turns; the best round of each set counts.

A rewrap only unwraps and rewraps each object's data key and updates its catalog row, one
short transaction per object; it reads and writes no object data. Both rates should be alike
(goal: within 2x of each other) and at least 200 objects/s. A sample of objects is read back
through the object service at the end.

The last line sums it up, e.g. ``rotation: rewrap 1KiB=850/s 10MiB=830/s ratio=1.02``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.keys import rotation  # noqa: E402
from gateway.principal import Actor  # noqa: E402

KIB = 1 << 10
MIB = 1 << 20
RATE_GOAL = 200.0
RATIO_GOAL = 2.0
PDF = b"%PDF-1.7\n"


def fake_aws_env() -> None:
    """Fake credentials and region (nothing can reach real AWS); loopback bypasses proxies."""
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    loopback = "127.0.0.1,localhost"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = (
        f"{no_proxy},{loopback}" if no_proxy else loopback)


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    from tests.services import free_port, wait_for_http

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wait_for_http(endpoint + "/moto-api/", timeout=30, proc=proc)
    return proc, endpoint


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def populate(stack, who: str, count: int, size: int, label: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Upload ``count`` objects of ``size`` bytes through the object service."""
    user = stack.users[who]
    actor = Actor(org_id=user.org_id, user_id=user.user_id, email=user.email, role=user.role)
    started = time.perf_counter()
    block = os.urandom(MIB)

    def one(i: int) -> str:
        path = f"uploads/bench/{label}/{i:05d}.pdf"
        head = PDF + i.to_bytes(8, "big")
        data = head + (block * (size // MIB + 1))[: size - len(head)]
        stack.services.objects.upload(
            actor, path, [data[j:j + MIB] for j in range(0, len(data), MIB)])
        return path

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(one, range(count)))
    seconds = time.perf_counter() - started
    print(f"uploaded {count} x {label} in {seconds:.1f} s", file=sys.stderr)
    return paths


def check_readable(stack, who: str, paths: list[str]) -> None:  # type: ignore[no-untyped-def]
    user = stack.users[who]
    actor = Actor(org_id=user.org_id, user_id=user.user_id, email=user.email, role=user.role)
    objects = stack.services.objects
    for path in paths:
        obj = objects.find(actor, path, "view")
        sha = hashlib.sha256()
        for chunk in objects.open(actor, obj).body:
            sha.update(chunk)
        if sha.hexdigest() != obj.sha256:
            raise SystemExit(f"bench: {path} does not read back after the rewrap")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=300, help="objects of 1 KiB")
    parser.add_argument("--large", type=int, default=100, help="large objects")
    parser.add_argument("--large-mib", type=int, default=10, help="size of a large object")
    parser.add_argument("--rounds", type=int, default=3, help="rotate + rewrap rounds")
    args = parser.parse_args(argv)

    fake_aws_env()
    from tests.stack import build_stack

    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-rotation-"))
    moto, endpoint = start_moto(tmp / "moto.log")
    stack = None
    try:
        stack = build_stack(f"sqlite:///{tmp / 'gw.db'}", endpoint, tmp)
        services = stack.services
        small_label, large_label = "1KiB", f"{args.large_mib}MiB"
        sets = {
            small_label: (stack.org1, "staff1",
                          populate(stack, "staff1", args.small, KIB, small_label), args.small),
            large_label: (stack.org2, "staff2",
                          populate(stack, "staff2", args.large, args.large_mib * MIB,
                                   large_label), args.large),
        }
        best: dict[str, float] = {name: 0.0 for name in sets}
        for round_number in range(1, args.rounds + 1):
            for name, (org_id, _who, _paths, count) in sets.items():
                rotation.rotate_org(services, org_id, command="bench rotate")
                started = time.perf_counter()
                result = rotation.rewrap(services, org_id, command="bench rewrap")
                seconds = time.perf_counter() - started
                if result.objects != count or result.failed:
                    raise SystemExit(f"bench: rewrap of {name} moved {result.objects} of "
                                     f"{count} objects ({result.failed} failed)")
                rate = count / seconds
                best[name] = max(best[name], rate)
                print(f"round {round_number}: rewrap {count} x {name}: {seconds:.3f} s, "
                      f"{rate:.0f} objects/s", file=sys.stderr)
        for name, (_org, who, paths, _count) in sets.items():
            check_readable(stack, who, paths[:: max(1, len(paths) // 20)])
        ratio = best[small_label] / best[large_label]
        for name, rate in best.items():
            print(f"rewrap {name:>6}: {rate:7.0f} objects/s (best of {args.rounds}; "
                  f"goal >= {RATE_GOAL:.0f}/s)")
        within = max(ratio, 1 / ratio) <= RATIO_GOAL
        print(f"small/large ratio {ratio:.2f} (goal within {RATIO_GOAL:.0f}x: "
              f"{'met' if within else 'MISSED'})")
        print(f"rotation: rewrap {small_label}={best[small_label]:.0f}/s "
              f"{large_label}={best[large_label]:.0f}/s ratio={ratio:.2f}")
        return 0
    finally:
        if stack is not None:
            stack.close()
        stop(moto)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
