"""Private lookups (docs/design.md §7, issue 8): evaluations/s, bytes per check, bulk checks/s.

Builds a synthetic breach of --records rows, its index and private part in a
temporary directory, then measures:

- OPRF operations per second on one core: the service's `blind_evaluate`, the
  service's whole per-item work (`answer_items`: evaluate + padded bucket + hex), the
  builder's `evaluate`, and the client's `blind` + `finalize`;
- the private build rate (records/s with --workers processes), and what it means for
  the 33 million records of the breach;
- the bytes of one private check on the wire (JSON bodies, both keys: 2 items);
- bulk private checks per second, in process (checker + service functions, no HTTP)
  and over HTTP on loopback (the service in a forked process, one worker).

    python bench/private_bench.py                      # 20,000 records, 4,000 checks
    python bench/private_bench.py --records 100000 --checks 20000 --workers 2

The machine may be shared: the 1-minute load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client.private import PrivateChecker, connect  # noqa: E402
from indexer.build.local import BuildOptions, build_index  # noqa: E402
from indexer.build.private import build_private  # noqa: E402
from indexer.build.synth import write_synthetic_breach  # noqa: E402
from indexer.core.matchkeys import QUERY_FIELDS  # noqa: E402
from indexer.index.generation import current_generation  # noqa: E402
from indexer.index.manifest import load_manifest, write_manifest  # noqa: E402
from indexer.private import oprf  # noqa: E402
from indexer.private.keys import write_oprf_key  # noqa: E402
from indexer.private.store import PrivateIndex  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.views.private import (  # noqa: E402
    answer_items,
    parse_items,
)

BREACH_RECORDS = 33_000_000


def per_second(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def time_ops(n: int, op: Any) -> float:
    started = time.perf_counter()
    for i in range(n):
        op(i)
    return per_second(n, time.perf_counter() - started)


def members(synth: Path, checks: int) -> list[dict[str, str]]:
    with (synth / "members.csv").open(encoding="utf-8", newline="") as stream:
        rows = [{k: v for k, v in row.items() if k in QUERY_FIELDS and v}
                for row in csv.DictReader(stream, delimiter=";")]
    return [rows[i % len(rows)] for i in range(checks)]


def serve(settings: Settings, port: int) -> None:
    from aiohttp import web

    from service.app import create_app

    app = create_app(settings)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def bulk_over_http(url: str, queries: list[dict[str, str]]) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url + "/v1/private/params") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
        checker = await connect(url, session, concurrency=2)
        await checker.check_many(queries[:50])  # warm up
        started = time.perf_counter()
        outcomes = await checker.check_many(queries)
        elapsed = time.perf_counter() - started
    assert len(outcomes) == len(queries)
    return per_second(len(queries), elapsed)


async def bulk_in_process(index: PrivateIndex, key: bytes, queries: list[dict[str, str]]) -> float:
    async def evaluate(items: list[dict[str, Any]]) -> Mapping[str, Any]:
        # The service's own functions and a JSON round trip each way, without HTTP.
        body = orjson.loads(orjson.dumps({"items": items}))
        answers = answer_items(index, key, parse_items(body["items"], index.bucket_count))
        answer: Mapping[str, Any] = orjson.loads(orjson.dumps({"items": answers}))
        return answer

    checker = PrivateChecker(index.params, evaluate, concurrency=1)
    started = time.perf_counter()
    await checker.check_many(queries)
    return per_second(len(queries), time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=4_000)
    parser.add_argument("--workers", type=int, default=2, help="private build processes")
    parser.add_argument("--ops", type=int, default=3_000, help="operations per micro-benchmark")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg()[0]}

    with tempfile.TemporaryDirectory(prefix="private-bench-") as tmp:
        root = Path(tmp)
        synth = root / "synth"
        write_synthetic_breach(synth, records=args.records, seed=20240129, workers=1)
        pepper = root / "pepper.key"
        pepper.write_bytes(os.urandom(32))
        pepper.chmod(0o600)
        index_dir = root / "index"
        build_index(synth / "sources.toml", index_dir, pepper.read_bytes(),
                    BuildOptions(shards=8, workers=1))
        generation = current_generation(index_dir)
        key_file = root / "oprf.key"
        write_oprf_key(key_file)
        key = bytes.fromhex(key_file.read_text().strip())

        cpu_before = os.times()
        started = time.perf_counter()
        section = build_private(synth / "sources.toml", generation, key,
                                workers=args.workers)
        build_s = time.perf_counter() - started
        cpu_after = os.times()
        cpu_s = sum(cpu_after[i] - cpu_before[i] for i in range(4))
        manifest = load_manifest(generation)
        manifest["private"] = section
        write_manifest(generation, manifest)
        results["private_build"] = {
            "records": args.records, "keys": section["keys"], "entries": section["entries"],
            "workers": args.workers, "seconds": round(build_s, 2),
            "records_per_s": round(per_second(args.records, build_s)),
            "records_per_cpu_s": round(per_second(args.records, cpu_s)),
            "breach_hours_at_this_rate": round(
                BREACH_RECORDS / per_second(args.records, build_s) / 3600, 1),
        }

        index = PrivateIndex(generation)
        params = index.params
        inputs = [f"strong|25307{i:010d}|1953-07-01".encode() for i in range(args.ops)]
        blinds = [oprf.blind(data) for data in inputs]
        evaluated = [oprf.blind_evaluate(key, element) for _, element in blinds]
        items = [(i % index.bucket_count, blinds[i][1]) for i in range(args.ops)]
        results["per_core_ops_per_s"] = {
            "service_blind_evaluate": round(time_ops(
                args.ops, lambda i: oprf.blind_evaluate(key, blinds[i][1]))),
            "service_item_total": round(per_second(args.ops, _timed(
                lambda: answer_items(index, key, items)))),
            "builder_evaluate": round(time_ops(args.ops, lambda i: oprf.evaluate(key, inputs[i]))),
            "client_blind_plus_finalize": round(time_ops(args.ops, lambda i: (
                oprf.blind(inputs[i]), oprf.finalize(inputs[i], blinds[i][0], evaluated[i])))),
        }

        # Bytes of one check with both keys (2 items), as the client sends them.
        two = [{"bucket": b, "blinded": e.hex()} for b, e in items[:2]]
        request = orjson.dumps({"items": two})
        response = orjson.dumps({"items": answer_items(index, key, items[:2])})
        results["bytes_per_check"] = {
            "request": len(request), "response": len(response),
            "response_per_item": len(response) // 2,
            "bucket_size": params.bucket_size, "output_bytes": params.output_bytes,
            "bucket_bits": params.bucket_bits,
        }

        queries = members(synth, args.checks)
        results["bulk_checks_per_s"] = {
            "in_process": round(asyncio.run(bulk_in_process(index, key, queries))),
        }
        port = free_port()
        settings = Settings(index_dir=index_dir, pepper_file=pepper,
                            keys_db=root / "keys.sqlite", anon_rate=0.0,
                            oprf_key_file=key_file)
        server = multiprocessing.get_context("fork").Process(
            target=serve, args=(settings, port), daemon=True)
        server.start()
        try:
            results["bulk_checks_per_s"]["http_loopback_1_worker"] = round(
                asyncio.run(bulk_over_http(f"http://127.0.0.1:{port}", queries)))
        finally:
            server.terminate()
            server.join(10)
        index.close()
    results["load_after"] = os.getloadavg()[0]
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    return 0


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
