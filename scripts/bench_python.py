"""Drives the Python zae-limiter (0.17.0) for `deno task bench`: the third peer.

Sets up its table on a DynamoDB Local endpoint, makes the first use of every key, then runs
rounds: `concurrency` requests in flight over the keys (round robin), each an async
`acquire(limits=..., consume=...)` whose context manager commits on exit, for `seconds` or
`requests`. Prints one JSON line per round: requests, errors, seconds, perSecond, p50Ms,
p99Ms, clientCpuUs.

    python bench_python.py --endpoint http://127.0.0.1:8000 --table bench-py --seconds 2
    python bench_python.py --endpoint ... --table ... --serve   # rounds asked on stdin

With --serve, each stdin line is a JSON round ({"concurrency": 16, "seconds": 2, "hot": false},
or "requests" instead of "seconds"); an empty line or EOF ends the driver. The first line
printed is {"ready": true} once the table is set up and every key used once.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlparse

# Only a local endpoint, and dummy credentials: the driver must never reach AWS.
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def local_only(endpoint: str) -> str:
    host = urlparse(endpoint).hostname
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"--endpoint must be a local DynamoDB: got {endpoint!r}")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ["AWS_ACCESS_KEY_ID"] = "local"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    return endpoint


def widen_pool() -> None:
    """aiobotocore keeps 10 connections by default, fewer than 16 in flight; the TypeScript
    clients of the bench allow 256. Give every client this process makes the same. Clients of
    other services (set-up probes for the stack's Lambda functions, which DynamoDB Local does
    not serve) make one attempt instead of retrying for seconds."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    create = AioSession.create_client

    def create_client(self, *args, **kwargs):
        service = args[0] if args else kwargs.get("service_name")
        config = AioConfig(max_pool_connections=256)
        if service != "dynamodb":
            config = config.merge(AioConfig(retries={"total_max_attempts": 1}))
        if kwargs.get("config") is not None:
            config = kwargs["config"].merge(config)
        kwargs["config"] = config
        return create(self, *args, **kwargs)

    AioSession.create_client = create_client


async def open_limiter(endpoint: str, table: str):
    from zae_limiter import RateLimiter, Repository

    # The table alone (Repository.open would deploy a CloudFormation stack when it is missing),
    # then open: it registers the namespace and writes the version record.
    setup = Repository(
        name=table, region="us-east-1", endpoint_url=endpoint, _skip_deprecation_warning=True
    )
    await setup.create_table()
    await setup.close()
    repo = await Repository.open(
        "default", stack=table, region="us-east-1", endpoint_url=endpoint, auto_update=False
    )
    return RateLimiter(repository=repo)


def quantile(xs, q):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run_round(limiter, limits, keys, concurrency, seconds=None, requests=None):
    consume = {"rpm": 1, "tpm": 500}
    state = {"next": 0, "started": 0, "requests": 0, "errors": 0}
    latencies = []
    kinds = {}
    cpu0 = time.process_time()
    start = time.perf_counter()
    until = start + seconds if seconds is not None else float("inf")

    async def worker():
        while time.perf_counter() < until and (requests is None or state["started"] < requests):
            state["started"] += 1
            key = keys[state["next"] % len(keys)]
            state["next"] += 1
            t0 = time.perf_counter()
            try:
                async with limiter.acquire(
                    entity_id=key, resource="gpt-4", limits=limits, consume=consume
                ):
                    pass
                state["requests"] += 1
                latencies.append((time.perf_counter() - t0) * 1000)
            except Exception as err:  # counted and reported, never hidden
                state["errors"] += 1
                kind = f"{type(err).__name__}: {err}"[:160]
                kinds[kind] = kinds.get(kind, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    done = max(1, state["requests"] + state["errors"])
    latencies.sort()
    return {
        "requests": state["requests"],
        "errors": state["errors"],
        "errorKinds": kinds,
        "seconds": elapsed,
        "perSecond": state["requests"] / elapsed,
        "p50Ms": quantile(latencies, 0.5),
        "p99Ms": quantile(latencies, 0.99),
        "clientCpuUs": cpu * 1e6 / done,
    }


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    endpoint = local_only(args.endpoint)
    widen_pool()

    from zae_limiter import Limit

    # High enough that every request is admitted, as for the other libraries.
    limits = [Limit.per_minute("rpm", 10_000_000), Limit.per_minute("tpm", 10_000_000_000)]
    keys = [f"key-{i}" for i in range(args.keys)]
    limiter = await open_limiter(endpoint, args.table)
    try:
        warm = await run_round(limiter, limits, keys + ["hot"], 1, requests=len(keys) + 1)
        if warm["errors"]:
            raise SystemExit(f"first use of the keys failed: {warm['errorKinds']}")
        if not args.serve:
            if args.seconds is None and args.requests is None:
                args.seconds = 2.0
            emit(await run_round(limiter, limits, keys, args.concurrency, args.seconds, args.requests))
            return
        emit({"ready": True})
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line:
                break
            ask = json.loads(line)
            emit(
                await run_round(
                    limiter,
                    limits,
                    ["hot"] if ask.get("hot") else keys,
                    int(ask.get("concurrency", 16)),
                    ask.get("seconds"),
                    ask.get("requests"),
                )
            )
    finally:
        await limiter.close()


if __name__ == "__main__":
    asyncio.run(main())
