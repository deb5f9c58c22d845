"""HTTP benchmark: Klustr bulk fetch vs the latency-bound minimum.

A loopback Klustr gateway (tests/servers, in its own process so it does not share our GIL)
adds --latency seconds to every response. The pull fetches /identities/me and
/identities/me/demographics for --users users with --concurrency requests in flight; the
minimum possible time is requests x latency / concurrency.

    .venv/bin/python bench/http.py          # 2,000 users, 20 ms, concurrency 16, median of 5 pulls
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named as the issue asks, which shadows the standard library's `http` package
# for anything imported while bench/ is on the path: take it off first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import statistics
import subprocess
import time

import identity_analytics as ia

SERVER = """
import sys, time
from tests.servers import Faults, KlustrServer, users_from_fixtures
fixtures = ("data/fixtures/identities.ndjson", "data/fixtures/demographics.ndjson")
users = users_from_fixtures(*fixtures, limit=int(sys.argv[1]))
with KlustrServer(users, faults=Faults(latency=float(sys.argv[2]))) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Klustr bulk fetch benchmark")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.users), str(args.latency)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        from tests.servers import token_for

        tokens = [token_for(n) for n in range(args.users)]
        policy = ia.PrivacyPolicy(pseudonym_key=b"bench-http")
        runs: list[tuple[float, float, int]] = []
        for _ in range(args.repeat):
            start, cpu = time.perf_counter(), time.process_time()
            ds = ia.Dataset.from_klustr(url, tokens, policy=policy, concurrency=args.concurrency)
            runs.append((time.perf_counter() - start, time.process_time() - cpu, len(ds)))
            ds.close()
    finally:
        server.communicate("")
    requests = 2 * args.users
    floor = requests * args.latency / args.concurrency
    print(
        f"{args.users:,} users, {requests:,} requests, {args.latency * 1000:.0f} ms latency, "
        f"concurrency {args.concurrency}\n"
        f"latency-bound minimum: {floor:.2f} s"
    )
    for elapsed, cpu, loaded in runs:
        print(
            f"identity_analytics Dataset.from_klustr: {elapsed:.2f} s ({loaded:,} identities loaded) "
            f"= {elapsed / floor:.2f}x the minimum; client CPU {cpu:.2f} s"
        )
    median = statistics.median(elapsed for elapsed, _, _ in runs)
    print(f"median of {len(runs)}: {median:.2f} s = {median / floor:.2f}x the minimum (target <= 1.3x)")

if __name__ == "__main__":
    main()
