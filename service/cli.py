"""`exposure-serve`: run the service, or manage API keys (docs/design.md §5, contract).

    exposure-serve [--index DIR] [--host H] [--port P] [--workers N] [--pepper-file F]
                   [--keys-db PATH|URL] [--anon-rate PER_MIN] [--anon-burst N] [--ipv6-prefix BITS]
                   [--max-batch-bytes N] [--trusted-proxy CIDR ...]
                   [--keepalive-timeout SECONDS] [--body-timeout SECONDS]
    exposure-serve keys create NAME [--rate RECORDS_PER_MIN]
    exposure-serve keys list
    exposure-serve keys revoke ID
    exposure-serve keys migrate

With --workers N the parent reserves the port and forks N workers, each listening on
its own socket bound to it (SO_REUSEPORT: the kernel spreads connections evenly over
them); they share the memory-mapped index through the page cache. The parent
restarts a worker that dies and passes SIGTERM/SIGINT on for a graceful drain: each
worker stops accepting, lets its requests in flight finish (a bulk stream included,
up to SHUTDOWN_TIMEOUT seconds), then stops.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer import __version__
from indexer.core.fingerprint import (
    PEPPER_ENV,
    Fingerprinter,
    PepperError,
    load_pepper,
    resolve_pepper_file,
)
from indexer.index.generation import IndexNotFound, current_generation
from indexer.index.reader import IndexError_, IndexReader, KeyMismatch
from service.resources import private
from service.resources.apikeys import DEFAULT_KEY_RATE, KeyStoreError
from service.resources.keystore import KeysLocation, is_postgres_url, open_key_store
from service.resources.logs import configure_logging
from service.settings import Settings
from service.supervisor import PortInUse, reserve_port, run_worker, supervise

KEYS_DB_ENV = "EXPOSURE_KEYS_DB"
DEFAULT_KEYS_DB = Path("var/keys.sqlite")




def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exposure-serve",
        description="Serve the exposure lookup API and web form, or manage API keys "
        "('exposure-serve keys --help').",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--index", type=Path, default=Path("var/index"), metavar="INDEX_DIR",
                        help="index directory; its 'current' link is followed (default var/index)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes sharing the index (default 1)")
    parser.add_argument("--pepper-file", type=Path, metavar="F",
                        help=f"the build's pepper (default: ${PEPPER_ENV})")
    parser.add_argument("--keys-db", metavar="PATH|URL",
                        help="API key store: an SQLite file, or a postgresql:// URL for "
                        "replicas on several hosts "
                        f"(default: ${KEYS_DB_ENV}, else {DEFAULT_KEYS_DB})")
    parser.add_argument("--anon-rate", type=float, default=30.0, metavar="PER_MIN",
                        help="anonymous lookups per minute per address (0 = unlimited; default 30)")
    parser.add_argument("--ipv6-prefix", type=int, default=64, metavar="BITS",
                        help="an IPv6 client is limited as its /BITS network: one customer "
                        "usually holds a /64 (default 64; 128 counts each address)")
    parser.add_argument("--anon-burst", type=int, default=10, metavar="N",
                        help="anonymous burst (default 10)")
    parser.add_argument("--max-batch-bytes", type=int, default=1 << 30, metavar="N",
                        help="largest bulk body in bytes (default 1 GiB)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                        help="reverse proxy whose X-Forwarded-For is believed (repeatable)")
    parser.add_argument("--keepalive-timeout", type=float, default=75.0, metavar="SECONDS",
                        help="close an idle connection, or one that has not sent a complete "
                        "request head, after SECONDS (default 75)")
    parser.add_argument("--body-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="answer 408 and close when a body stalls: the whole body of a "
                        "small request, or each wait for more of a bulk body (default 60)")
    parser.add_argument("--index-poll", type=float, default=2.0, metavar="SECONDS",
                        help="how often to look for a newly published generation (default 2)")
    parser.add_argument("--oprf-key-file", type=Path, metavar="F",
                        help="OPRF key for /v1/private/* (default: $EXPOSURE_OPRF_KEY_FILE; "
                        "without one those routes answer 503)")
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--keys-db", metavar="PATH|URL", default=argparse.SUPPRESS,
                    help="API key store: an SQLite file, or a postgresql:// URL for "
                    f"replicas on several hosts (default: ${KEYS_DB_ENV}, else {DEFAULT_KEYS_DB})")
    keys = commands.add_parser("keys", help="create, list or revoke API keys", parents=[db],
                               description="Manage the API keys of bulk callers.")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key; it is printed once", parents=[db],
                                description="Create an API key for NAME. The key is printed "
                                "once; only its hash is stored.")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--rate", type=int, default=DEFAULT_KEY_RATE, metavar="RECORDS_PER_MIN",
                        help=f"records per minute (default {DEFAULT_KEY_RATE:,})")
    actions.add_parser("list", help="list keys with their usage (never the keys)", parents=[db])
    revoke = actions.add_parser("revoke", help="revoke a key by id; effective at once",
                                parents=[db])
    revoke.add_argument("id", type=int, metavar="ID")
    actions.add_parser("migrate", help="create or update the key store's schema",
                       parents=[db], description="Create the key store's tables, or bring "
                       "them to this version's schema (the service also does it at start).")
    return parser


def _keys_db(args: argparse.Namespace) -> KeysLocation:
    location = args.keys_db or os.environ.get(KEYS_DB_ENV) or str(DEFAULT_KEYS_DB)
    return location if is_postgres_url(location) else Path(location)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "keys":
            return _keys(args)
        return _serve(args)
    except (PepperError, KeyStoreError, KeyMismatch, PortInUse, ValueError) as exc:
        print(f"exposure-serve: {exc}", file=sys.stderr)
        return 2


def _check_fresh_store(path: Path, action: str) -> None:
    """A missing key store is created only by `keys create`, only where no service left
    its journal, and never silently (issue 14: a `revoke` after the file was deleted made
    an empty store, reused ids, and the running service never saw the revocation)."""
    if path.exists():
        return
    if action not in ("create", "migrate"):
        raise KeyStoreError(f"there is no key store at {path}: nothing to {action} "
                            "(give --keys-db, or set $EXPOSURE_KEYS_DB)")
    journals = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    if any(journal.exists() for journal in journals):
        raise KeyStoreError(
            f"the key store {path} is missing but its journal ({path}-wal) is there: a "
            "service may still be using the deleted file. Restore the file from a "
            "backup; or stop every service using it, remove the journal files and "
            "create the keys again")
    print(f"exposure-serve: creating a new key store at {path} (mode 0600)",
          file=sys.stderr)


def _keys(args: argparse.Namespace) -> int:
    location = _keys_db(args)
    if not is_postgres_url(location):
        _check_fresh_store(Path(location), args.action)
    store = open_key_store(location, watch=False)
    try:
        if args.action == "migrate":
            print(f"key store schema at version {store.migrate()}")
        elif args.action == "create":
            key, token = store.create(args.name, args.rate)
            print(token)
            print(f"key {key.id} for {key.name!r}, {key.rate_per_minute:,} records/min. "
                  "This is the only time the key is shown: store it now.", file=sys.stderr)
        elif args.action == "list":
            print(f"{'id':>4}  {'name':<30} {'rate/min':>12} {'requests':>10} {'records':>12}  "
                  "created               revoked")
            for key, requests, records in store.all_keys():
                print(f"{key.id:>4}  {key.name:<30} {key.rate_per_minute:>12,} {requests:>10,} "
                      f"{records:>12,}  {key.created_at}  {key.revoked_at or '-'}")
        else:
            if not store.revoke(args.id):
                print(f"exposure-serve: no live key with id {args.id}", file=sys.stderr)
                return 1
            print(f"key {args.id} revoked")
    finally:
        store.close()
    return 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.anon_rate < 0 or args.anon_burst < 1:
        raise ValueError("--anon-rate must be >= 0 and --anon-burst >= 1")
    if not 1 <= args.ipv6_prefix <= 128:
        raise ValueError("--ipv6-prefix must be from 1 to 128 (bits of an IPv6 network)")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.keepalive_timeout <= 0 or args.body_timeout <= 0:
        raise ValueError("--keepalive-timeout and --body-timeout must be positive")
    try:
        proxies = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in args.trusted_proxy)
    except ValueError as exc:
        raise ValueError(f"--trusted-proxy: {exc}") from None
    return Settings(
        index_dir=args.index, pepper_file=args.pepper_file, keys_db=_keys_db(args),
        anon_rate=args.anon_rate, anon_burst=args.anon_burst, trusted_proxies=proxies,
        ipv6_prefix=args.ipv6_prefix,
        max_batch_bytes=args.max_batch_bytes, index_poll_seconds=args.index_poll,
        keepalive_timeout=args.keepalive_timeout, body_timeout=args.body_timeout,
        oprf_key_file=args.oprf_key_file,
    )


def _precheck(settings: Settings) -> None:
    """Refuse to start with a clear message rather than answer "not found" to everyone."""
    fingerprinter = Fingerprinter(load_pepper(resolve_pepper_file(settings.pepper_file)))
    try:
        IndexReader(current_generation(settings.index_dir), fingerprinter, verify=False)
    except (IndexNotFound, IndexError_) as exc:
        if isinstance(exc, KeyMismatch):
            raise
        print(f"exposure-serve: warning: {exc}; not ready until an index is published",
              file=sys.stderr)
    open_key_store(settings.keys_db, watch=False).close()
    private.precheck(settings)


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    settings = settings_from_args(args)
    _precheck(settings)
    # One worker listens on the socket bound here. With several, this socket only holds
    # the port (bound, never listening): each worker listens on its own socket bound to
    # the same port (SO_REUSEPORT), and the kernel spreads new connections evenly over
    # them. On one shared listening socket, whichever worker woke first took the
    # connection: all 64 keep-alive connections of a load test could land on one of
    # two workers (measured), leaving the other core idle.
    sock = reserve_port(args.host, args.port, workers=args.workers)
    port = sock.getsockname()[1]
    print(f"exposure-serve: http://{args.host}:{port}/ "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}, index {settings.index_dir})",
          file=sys.stderr, flush=True)
    if args.workers == 1:
        run_worker(settings, sock)
        return 0
    return supervise(settings, sock, (args.host, port), args.workers)




if __name__ == "__main__":
    sys.exit(main())
