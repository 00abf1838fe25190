#!/usr/bin/env python3
"""`make container-test`: build deploy/Dockerfile with podman and run the image as documented.

What deploy/README.md says an operator does, on this machine, with nothing installed by
hand: Debian bookworm bases made with debootstrap (deploy/ci/base-image.sh), the image
built with `podman build --runtime runc --network host`, then run non-root, with a
read-only root, /tmp a noexec tmpfs, every capability dropped, the index mounted
read-only and the pepper and OPRF key as secret files. Through the container:
/readyz, a strong, a weak and a similar check, /v1/private/params (libsodium in use with
a noexec /tmp), a bulk CSV through the image's own exposure-client, the HEALTHCHECK, and
a SIGTERM that drains a bulk request in flight and exits 0. Prints the time of each step,
the image size and the start-up time.

Standard library only (it runs before any virtualenv exists); needs root and podman
(deploy/ci/install-tools.sh). Exit 0 when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podman_support import (  # noqa: E402  (a sibling module, not a package)
    IMAGE,
    ROOT,
    UID,
    CheckFailed,
    base_images,
    build_service_image,
    call,
    check,
    prune_old_images,
    run,
    step,
    summary,
    ulimits,
)

SERVE_PORT = 9090  # a port given on the command line, not the image's default 8080
RECORDS = 20_000  # the synthetic breach: big enough for every match level, built in seconds
# ristretto255's group order: an OPRF key is a canonical non-zero scalar below it.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


# Options of every container: what deploy/README.md documents for a production run.
def hardened() -> list[str]:
    return [
        "--runtime", "runc", *ulimits(),
        "--user", f"{UID}:{UID}",
        "--read-only",
        "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=16m,mode=1777",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
    ]


def wait_ready(url: str, timeout: float, container: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = call("GET", url + "/readyz", timeout=1)
            if status == 200:
                return time.monotonic() - began
        state = run("podman", "inspect", "--format", "{{.State.Status}}", container).stdout
        if state.strip() not in ("running", "created", "configured"):
            logs = run("podman", "logs", container, check_status=False)
            raise CheckFailed(f"the container stopped ({state.strip()}):\n"
                              f"{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(0.1)
    raise CheckFailed(f"/readyz not 200 after {timeout:.0f} s")


# ----------------------------------------------------------------------------- checks


def members_by_level(data: Path) -> dict[str, dict[str, str]]:
    """One member row per expected level (strong, weak) from the synthetic ground truth."""
    with (data / "members-expected.csv").open(encoding="utf-8") as stream:
        expected = {row["ref"]: row for row in csv.DictReader(stream)}
    chosen: dict[str, dict[str, str]] = {}
    with (data / "members.csv").open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream, delimiter=";"):
            level = expected[row["ref"]]["match"]
            if level in ("strong", "weak") and level not in chosen:
                chosen[level] = row
    check(set(chosen) == {"strong", "weak"}, f"ground truth lacks a level: {sorted(chosen)}")
    return chosen


def similar_query(weak_member: dict[str, str]) -> dict[str, str]:
    """The weak member with one letter of the last name changed (docs/design.md §3: one edit)."""
    last = weak_member["last_name"]
    position = next(i for i, c in enumerate(last) if c.isalpha())
    replacement = "Z" if last[position].upper() != "Z" else "Y"
    return {"last_name": last[:position] + replacement + last[position + 1:],
            "first_name": weak_member["first_name"], "birth_date": weak_member["birth_date"]}


def lookups(url: str, data: Path) -> None:
    members = members_by_level(data)
    strong = {k: members["strong"][k] for k in ("nir", "birth_date")}
    status, answer = call("POST", url + "/v1/check", strong)
    check(status == 200 and isinstance(answer, dict) and answer.get("match") == "strong",
          f"strong check: {status} {answer}")
    weak = {k: members["weak"][k] for k in ("last_name", "first_name", "birth_date")}
    status, answer = call("POST", url + "/v1/check", weak)
    check(status == 200 and isinstance(answer, dict) and answer.get("match") == "weak",
          f"weak check: {status} {answer}")
    status, answer = call("POST", url + "/v1/check", similar_query(members["weak"]))
    check(status == 200 and isinstance(answer, dict), f"similar check: {status} {answer}")
    assert isinstance(answer, dict)
    # `similar` is the third level (docs/design.md §3); an image that predates it answers
    # found=false, which this test reports rather than hides.
    print(f"container-test:   similar check answered match={answer.get('match')!r}")
    status, answer = call("POST", url + "/v1/check", {"nir": "295109912611199",
                                                      "birth_date": "1995-10-01"})
    check(status == 422, f"invalid NIR: expected 422, got {status}")
    status, params = call("GET", url + "/v1/private/params")
    check(status == 200 and isinstance(params, dict)
          and params.get("suite") == "ristretto255-SHA512",
          f"/v1/private/params (libsodium under a noexec /tmp): {status} {params}")


def bulk_through_client(url: str, data: Path, secrets_dir: Path, out: Path) -> None:
    """The image's own exposure-client, from another container, on the members file."""
    run("podman", "run", "--rm", *hardened(), "--network", "host",
        "--entrypoint", "exposure-client",
        "-v", f"{data}:/data:ro", "-v", f"{out}:/out",
        "-v", f"{secrets_dir / 'api.key'}:/run/secrets/api_key:ro",
        IMAGE, "check", "/data/members.csv", "--url", url, "--out", "/out/results.csv",
        "--api-key-file", "/run/secrets/api_key")
    with (data / "members-expected.csv").open(encoding="utf-8") as stream:
        expected = {row["ref"]: row for row in csv.DictReader(stream)}
    with (out / "results.csv").open(encoding="utf-8") as stream:
        results = list(csv.DictReader(stream))
    check(len(results) == len(expected), f"results: {len(results)} rows for {len(expected)}")
    missed = [r["ref"] for r in results
              if expected[r["ref"]]["match"] in ("strong", "weak") and r["found"] != "true"]
    wrong = [r["ref"] for r in results if expected[r["ref"]]["in_breach"] == "false"
             and r["match"] in ("strong", "weak")]
    check(not missed, f"bulk: {len(missed)} members of the breach not found")
    check(not wrong, f"bulk: {len(wrong)} members outside the breach found on a strong/weak key")
    print(f"container-test:   bulk: {len(results)} members checked, "
          f"{sum(r['found'] == 'true' for r in results)} found")


def healthcheck(container: str) -> None:
    result = run("podman", "healthcheck", "run", container, check_status=False)
    check(result.returncode == 0, f"HEALTHCHECK: exit {result.returncode} {result.stdout}"
          f"{result.stderr}")
    status = run("podman", "inspect", "--format", "{{.State.Health.Status}}",
                 container).stdout.strip()
    check(status == "healthy", f"HEALTHCHECK status {status!r}")


def slow_bulk(host: str, port: int, token: str, lines: list[str], seconds: float,
              outcome: dict[str, Any]) -> None:
    """A bulk request whose body trickles in over `seconds`, as a slow insurer's would."""
    def body() -> Iterator[bytes]:
        yield (lines[0] + "\n").encode()
        for line in lines[1:]:
            time.sleep(seconds / len(lines))
            yield (line + "\n").encode()
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request("POST", "/v1/check/batch", body=body(), encode_chunked=True,
                           headers={"Content-Type": "text/csv",
                                    "Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        outcome["status"] = answer.status
        outcome["lines"] = answer.read().decode().splitlines()
    except (OSError, http.client.HTTPException) as exc:
        outcome["error"] = repr(exc)
    finally:
        connection.close()


def drain_on_sigterm(container: str, port: int, token: str, data: Path) -> None:
    with (data / "members.csv").open(encoding="utf-8") as stream:
        lines = stream.read().splitlines()[:201]
    outcome: dict[str, Any] = {}
    client = threading.Thread(target=slow_bulk,
                              args=("127.0.0.1", port, token, lines, 3.0, outcome))
    client.start()
    time.sleep(1.0)  # the request is in flight, its body still arriving
    run("podman", "kill", "--signal", "TERM", container)
    client.join(60)
    exit_code = run("podman", "wait", container).stdout.strip()
    check(outcome.get("status") == 200, f"bulk in flight during SIGTERM: {outcome}")
    answers = outcome["lines"]
    check(len(answers) == len(lines) and '"summary"' in answers[-1],
          f"bulk in flight during SIGTERM: {len(answers)} lines for {len(lines) - 1} + summary")
    check(exit_code == "0", f"exit code after SIGTERM: {exit_code}")


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Build deploy/Dockerfile with podman and check the image as deploy/"
        "README.md runs it (make container-test). Needs root and podman, runc, "
        "debootstrap (deploy/ci/install-tools.sh installs them).")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory and the last container for inspection")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("container-test: run as root (rootful podman, debootstrap)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="exposure-container-test-", dir="/var/tmp"))
    name = f"exposure-ct-{os.getpid()}"
    try:
        return _main(work, name)
    except CheckFailed as exc:
        print(f"container-test: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            run("podman", "rm", "-f", "-t", "0", name, check_status=False)
            shutil.rmtree(work, ignore_errors=True)
        prune_old_images()
        summary("container-test")


def _main(work: Path, name: str) -> int:
    with step("base images (debootstrap, cached by recipe)"):
        build_base, runtime_base = base_images()

    with step("podman build"):
        size = build_service_image(work, build_base, runtime_base)
        print(f"container-test:   image size: {size / 1e6:.0f} MB")

    with step("no installer in the runtime image"):
        probe = ("import importlib.util, pathlib, sys; "
                 "found = [m for m in ('pip', 'setuptools') if importlib.util.find_spec(m)]; "
                 "found += [str(p) for p in pathlib.Path('/usr').rglob('*.whl')]; "
                 "found += [str(p) for p in pathlib.Path('/opt/exposure').rglob('pip')]; "
                 "print(' '.join(found)); sys.exit(1 if found else 0)")
        result = run("podman", "run", "--rm", *hardened(), "--network", "none",
                     "--entrypoint", "python3", IMAGE, "-c", probe, check_status=False)
        check(result.returncode == 0, f"pip or setuptools in the image: {result.stdout}")

    data, index, keys, out, secrets_dir = (work / d for d in
                                           ("data", "index", "keys", "out", "secrets"))
    for directory in (data, index, keys, out, secrets_dir):
        directory.mkdir(mode=0o700)
        os.chown(directory, UID, UID)
    (secrets_dir / "pepper").write_bytes(secrets.token_bytes(32))
    scalar = secrets.randbelow(GROUP_ORDER - 1) + 1
    (secrets_dir / "oprf.key").write_bytes(scalar.to_bytes(32, "little"))
    for secret in secrets_dir.iterdir():
        os.chown(secret, UID, UID)
        secret.chmod(0o400)
    secret_mounts = [
        "-v", f"{secrets_dir / 'pepper'}:/run/secrets/exposure_pepper:ro",
        "-v", f"{secrets_dir / 'oprf.key'}:/run/secrets/exposure_oprf_key:ro",
        "-e", "EXPOSURE_OPRF_KEY_FILE=/run/secrets/exposure_oprf_key",
    ]

    with step(f"synthetic breach ({RECORDS:,} records) and index build, in the image"):
        run("podman", "run", "--rm", *hardened(), "--network", "none",
            "--entrypoint", "exposure-index", "-v", f"{data}:/data", IMAGE,
            "synth", "--out", "/data", "--records", str(RECORDS))
        run("podman", "run", "--rm", *hardened(), "--network", "none", *secret_mounts,
            "--entrypoint", "exposure-index", "-v", f"{data}:/data:ro",
            "-v", f"{index}:/var/lib/exposure/index", IMAGE,
            "build", "/data/sources.toml", "--out", "/var/lib/exposure/index", "--private")
        key = run("podman", "run", "--rm", *hardened(), "--network", "none",
                  "-v", f"{keys}:/var/lib/exposure/keys", IMAGE,
                  "keys", "create", "CI insurer").stdout.strip().splitlines()[-1]
        check(key.startswith("exk_"), "keys create printed no key")
        (secrets_dir / "api.key").write_text(key + "\n")
        os.chown(secrets_dir / "api.key", UID, UID)
        (secrets_dir / "api.key").chmod(0o400)

    with step("start-up (podman run to /readyz 200)"):
        began = time.monotonic()
        run("podman", "run", "-d", "--name", name, *hardened(),
            "-p", f"127.0.0.1::{SERVE_PORT}", *secret_mounts,
            "-v", f"{index}:/var/lib/exposure/index:ro",
            "-v", f"{keys}:/var/lib/exposure/keys", IMAGE,
            # Not the image's default port: the HEALTHCHECK must follow the command.
            "--host", "0.0.0.0", "--port", str(SERVE_PORT), "--index",
            "/var/lib/exposure/index", "--workers", "1")
        port = int(run("podman", "port", name, str(SERVE_PORT)).stdout.strip()
                   .rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 60, name)
        startup = time.monotonic() - began
        print(f"container-test:   start-up time: {startup:.2f} s")
        mounts = run("podman", "exec", name, "cat", "/proc/mounts").stdout
        tmp = next(line for line in mounts.splitlines() if line.split()[1] == "/tmp")
        check("noexec" in tmp.split()[3], f"/tmp is not noexec: {tmp}")
        root = next(line for line in mounts.splitlines() if line.split()[1] == "/")
        check(root.split()[3].startswith("ro"), f"root not read-only: {root}")
        status = run("podman", "exec", name, "cat", "/proc/1/status").stdout
        caps = {line.split(":")[0]: line.split()[1] for line in status.splitlines()
                if line.startswith("Cap")}
        check(caps["CapEff"] == "0000000000000000" and caps["CapBnd"] == "0000000000000000",
              f"capabilities left: {caps}")
        uid = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]
        check(uid == str(UID), f"runs as uid {uid}")

    with step("lookups through the container"):
        lookups(url, data)

    with step("bulk CSV through the image's exposure-client"):
        bulk_through_client(url, data, secrets_dir, out)

    with step("HEALTHCHECK"):
        healthcheck(name)

    with step("SIGTERM drains a bulk request in flight, exit 0"):
        drain_on_sigterm(name, port, (secrets_dir / "api.key").read_text().strip(), data)

    print(f"container-test: OK (image {size / 1e6:.0f} MB, start-up {startup:.2f} s)")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
