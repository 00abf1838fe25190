"""`exposure-index`: synth, build, info and verify (docs/design.md §4, contract).

Exit codes: 0 success, 1 a fault found (verify) or the build failed, 2 bad usage or
missing pepper. Output never holds an identifier: counts, sizes, ids and paths only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer import __version__
from indexer.build.dumps import DumpError
from indexer.build.local import (
    DEFAULT_ERROR_RATE,
    DEFAULT_SHARDS,
    BuildLocked,
    BuildOptions,
    build_index,
)
from indexer.build.sources import SourcesError
from indexer.core.fingerprint import PEPPER_ENV, PepperError, load_pepper, resolve_pepper_file
from indexer.index.generation import IndexNotFound, current_generation
from indexer.index.manifest import ManifestError, load_manifest, verify_generation

EXIT_FAULT = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exposure-index",
        description=(
            "Build and inspect the breach index: identifiers are normalised and turned "
            "into keyed fingerprints; no plaintext identifier is ever written."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth", help="write a synthetic breach (two dumps, sources.toml, members.csv)",
        description="Write a synthetic breach into DIR: viamedis.csv, almerys.csv, "
        "sources.toml, members.csv (an insurer's member file: half in the breach, typed with "
        "every kind of difference of docs/design.md §3) and members-expected.csv (per member: "
        "the level a lookup should answer, the sources, the kind of difference).",
    )
    synth.add_argument("--out", required=True, type=Path, metavar="DIR")
    synth.add_argument("--records", type=int, default=1_000_000, metavar="N",
                       help="rows across both dumps (default: 1,000,000)")
    synth.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")

    build = commands.add_parser(
        "build", help="build and atomically publish a new index generation",
        description="Read the dumps listed in SOURCES_TOML and publish a new generation in "
        "INDEX_DIR (INDEX_DIR/current is switched only once it is complete). "
        f"The pepper comes from --pepper-file, else ${PEPPER_ENV}.",
    )
    build.add_argument("sources", type=Path, metavar="SOURCES_TOML")
    build.add_argument("--out", required=True, type=Path, metavar="INDEX_DIR")
    build.add_argument("--shards", type=int, default=DEFAULT_SHARDS, metavar="N",
                       help=f"number of shards (default {DEFAULT_SHARDS})")
    build.add_argument("--workers", type=int, default=0, metavar="N",
                       help="worker processes (default: one per core)")
    build.add_argument("--bloom-error-rate", type=float, default=DEFAULT_ERROR_RATE, metavar="P",
                       help=f"Bloom filter false-positive rate (default {DEFAULT_ERROR_RATE})")
    build.add_argument("--private", action="store_true",
                       help="also build the private-lookup part (docs/design.md §7): about 3,000 "
                       "records/s per core, so hours for 33 million records")
    build.add_argument("--oprf-key-file", type=Path, metavar="F",
                       help="OPRF key for --private: 32 bytes or 64 hex "
                       "(default: $EXPOSURE_OPRF_KEY_FILE)")
    build.add_argument("--private-bucket-bits", type=int, metavar="B",
                       help="bucket bits of the private part (default: chosen from the key count)")
    build.add_argument("--pepper-file", type=Path, metavar="F",
                       help=f"file of >= 32 secret random bytes (default: ${PEPPER_ENV})")
    build.add_argument("--engine", choices=("local", "dask"), default="local",
                       help="local: worker processes on this machine (default); dask: the "
                       "workers of the Dask cluster at --scheduler, which read the dumps and "
                       "write INDEX_DIR themselves, so both must be on a filesystem shared by "
                       "the workers and this machine, at the same paths")
    build.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler for --engine dask, e.g. tls://host:8786; the "
                       "pepper is sent to the workers: use TLS (see deploy/README.md)")

    info = commands.add_parser(
        "info", help="sources, counts, sizes and key id of the current generation",
        description="Print what the current generation holds: never an identifier.",
    )
    info.add_argument("index", type=Path, metavar="INDEX_DIR")
    info.add_argument("--json", action="store_true", help="print the manifest summary as JSON")

    verify = commands.add_parser(
        "verify", help="check checksums and structure; non-zero exit on any fault",
        description="Verify the current generation: every file's size and checksum, sorted "
        "shards, meta and Bloom filters. Exit 1 on any fault.",
    )
    verify.add_argument("index", type=Path, metavar="INDEX_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "build":
            return _build(args)
        if args.command == "info":
            return _info(args)
        return _verify(args)
    except PepperError as exc:
        print(f"exposure-index: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SourcesError, DumpError, IndexNotFound, ManifestError, BuildLocked) as exc:
        print(f"exposure-index: {exc}", file=sys.stderr)
        return EXIT_FAULT
    except ValueError as exc:
        print(f"exposure-index: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # A file or directory that cannot be read or written: its path and the reason,
        # never file content.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"exposure-index: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAULT
    except KeyboardInterrupt:
        print("exposure-index: interrupted; the current generation is unchanged", file=sys.stderr)
        return 130


def _synth(args: argparse.Namespace) -> int:
    from indexer.build.synth import write_synthetic_breach

    if args.records < 1:
        raise ValueError("--records must be at least 1")
    summary = write_synthetic_breach(
        args.out, records=args.records, seed=args.seed, progress=sys.stderr.isatty()
    )
    rate = args.records / max(summary.seconds, 1e-9)
    print(f"wrote {args.records:,} records and {summary.members:,} members to {args.out} "
          f"in {summary.seconds:.1f} s ({rate:,.0f} records/s)")
    print(f"next: exposure-index build {args.out / 'sources.toml'} --out INDEX_DIR")
    return 0


def _build(args: argparse.Namespace) -> int:
    _check_engine(args)
    pepper = load_pepper(resolve_pepper_file(args.pepper_file))
    private = None
    if args.private:
        from indexer.build.private import PrivateBuild
        from indexer.private.keys import load_oprf_key, resolve_oprf_key_file

        # A bad OPRF key must fail now, not after the hours of work it would key.
        key = load_oprf_key(resolve_oprf_key_file(args.oprf_key_file))
        private = PrivateBuild(key, args.private_bucket_bits)
    options = BuildOptions(
        shards=args.shards, workers=args.workers, bloom_error_rate=args.bloom_error_rate,
        progress=sys.stderr.isatty(), private=private,
    )
    if args.engine == "dask":
        from indexer.build.dask_engine import (
            DASK_BLOCK_SIZE,
            ClusterBuildFailed,
            build_index_on_dask,
            is_encrypted_address,
        )

        if not is_encrypted_address(args.scheduler):
            print(f"exposure-index: warning: {args.scheduler} is not a tls:// address: the "
                  "pepper will cross the network in clear", file=sys.stderr)
        try:
            report = build_index_on_dask(
                args.sources, args.out, pepper,
                dataclasses.replace(options, block_size=DASK_BLOCK_SIZE),
                scheduler=args.scheduler,
            )
        except ClusterBuildFailed as exc:
            print(f"exposure-index: {exc}; the current generation is unchanged",
                  file=sys.stderr)
            return EXIT_FAULT
    else:
        report = build_index(args.sources, args.out, pepper, options)
    manifest = report.manifest
    totals = manifest["totals"]
    print(f"published {report.generation.name} in {args.out} "
          f"({report.seconds:.1f} s, {totals['rows'] / max(report.seconds, 1e-9):,.0f} rows/s)")
    _print_sources(manifest)
    print(f"fingerprints: {totals['fingerprints']:,}  key id: {manifest['key_id']}")
    print("timings: " + ", ".join(f"{phase} {seconds:.1f} s"
                                  for phase, seconds in report.phases.items()))
    return 0


def _check_engine(args: argparse.Namespace) -> None:
    """Usage errors of --engine, before the pepper is read."""
    if args.engine == "local":
        if args.scheduler is not None:
            raise ValueError("--scheduler is for --engine dask")
        return
    if not args.scheduler:
        raise ValueError(
            "--engine dask needs --scheduler ADDRESS (the Dask scheduler, e.g. tls://host:8786)"
        )
    if args.workers:
        raise ValueError("--workers is for the local engine: on Dask, the cluster's workers "
                         "do the work")
    if args.private:
        raise ValueError("--private is not built on Dask yet: build with --engine local")


def _print_sources(manifest: dict[str, object]) -> None:
    sources = manifest["sources"]
    assert isinstance(sources, list)
    for source in sources:
        faults = ", ".join(f"{reason} {count:,}" for reason, count in source["faults"].items())
        print(f"  {source['id']:<20} {source['title']:<20} breach {source['breach_date']}  "
              f"rows {source['rows']:,}  indexed {source['records_indexed']:,}  "
              f"bad rows {source['bad_rows']:,}" + (f" ({faults})" if faults else ""))


def _info(args: argparse.Namespace) -> int:
    import orjson

    generation = current_generation(args.index)
    manifest = load_manifest(generation)
    sizes = {name: entry["bytes"] for name, entry in manifest["files"].items()}
    if args.json:
        summary = {key: manifest[key] for key in
                   ("format", "generation", "created", "key_id", "sources", "totals", "bloom")}
        summary["shards"] = manifest["shards"]["count"]
        summary["similar_entries"] = manifest["similar"]["entries"]
        summary["bytes"] = sum(sizes.values())
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"index      {args.index}")
    print(f"generation {manifest['generation']} (created {manifest['created']})")
    print(f"format     {manifest['format']}")
    print(f"key id     {manifest['key_id']}")
    print(f"shards     {manifest['shards']['count']}  Bloom error rate "
          f"{manifest['bloom']['error_rate']}")
    by_kind: dict[str, int] = {}
    for name, size in sizes.items():
        kind = name.rsplit(".", 1)[-1]
        by_kind[kind] = by_kind.get(kind, 0) + size
    print("size       " + ", ".join(f"{kind} {size / 2**20:,.1f} MiB"
                                   for kind, size in sorted(by_kind.items())))
    totals = manifest["totals"]
    print(f"rows       {totals['rows']:,} (bad {totals['bad_rows']:,})  "
          f"fingerprints {totals['fingerprints']:,}  "
          f"similar entries {manifest['similar']['entries']:,}")
    print("sources")
    _print_sources(manifest)
    return 0


def _verify(args: argparse.Namespace) -> int:
    generation = current_generation(args.index)
    from indexer.private.store import verify_private

    faults = verify_generation(generation, deep=True) + verify_private(generation)
    if faults:
        for fault in faults:
            print(f"FAULT {fault}", file=sys.stderr)
        print(f"{generation.name}: {len(faults)} fault(s)", file=sys.stderr)
        return EXIT_FAULT
    print(f"{generation.name}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
