"""The image's HEALTHCHECK: GET /healthz on the port the running exposure-serve was given.

The port is read from the server's own command line (`--port N` or `--port=N`, else the
default 8080), so that a `command:` override in compose or Kubernetes that moves the port
moves the probe with it: a probe with its own copy of the port is the one that goes stale.
Standard library only (the image has no curl). Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"


def server_arguments() -> list[str] | None:
    """The arguments of the oldest exposure-serve process in this container."""
    for proc in sorted(Path("/proc").glob("[0-9]*"), key=lambda p: int(p.name)):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, argument in enumerate(argv[:3]):
            if Path(argument).name == "exposure-serve":
                return argv[i + 1:]
    return None


def option(arguments: list[str], name: str) -> str | None:
    for i, argument in enumerate(arguments):
        if argument.startswith(name + "="):
            return argument.split("=", 1)[1]
        if argument == name and i + 1 < len(arguments):
            return arguments[i + 1]
    return None


def probe_url(arguments: list[str]) -> str:
    port = int(option(arguments, "--port") or DEFAULT_PORT)
    host = option(arguments, "--host") or DEFAULT_HOST
    # A wildcard bind answers on loopback; a specific address only on itself.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    arguments = server_arguments()
    if arguments is None:
        print("healthcheck: no exposure-serve process in this container", file=sys.stderr)
        return 1
    url = probe_url(arguments)
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
