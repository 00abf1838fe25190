#!/usr/bin/env python3
"""`make compose-test`: deploy/compose.yaml's topology, run with podman as a pod.

podman-compose from Debian 12 (1.0.3) cannot run deploy/compose.yaml: it has no
profiles, ignores the network's subnet and the fixed `ipv4_address` that the replicas'
`--trusted-proxy` names, and its CNI networks resolve no service names without a plugin
Debian 12 does not install. So the services of compose.yaml are read from the file and
started as containers of one podman pod, each with its image, command, environment,
secrets, volumes, tmpfs, read-only root, dropped capabilities and ulimits exactly as
written there. What a pod changes, and only that: the containers share one network
namespace, so the service names resolve to 127.0.0.1 (`--add-host`), the second replica
and nginx's plain-HTTP listener move to ports of their own, and the replicas trust
127.0.0.1 as their proxy instead of the compose network's fixed nginx address.
deploy/README.md ("Compose, run here") says the same.

Checked end to end through nginx (TLS): lookups answered by both replicas, a bulk file
through exposure-client, API keys shared through PostgreSQL (created and revoked with
`exposure-serve keys`, seen by both replicas), and a new generation published by the
index-build job while a client keeps checking through nginx without one failed request.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import secrets
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podman_support import (  # noqa: E402  (a sibling module, not a package)
    IMAGE,
    ROOT,
    UID,
    WHO,
    CheckFailed,
    base_images,
    build_service_image,
    check,
    podman_build,
    run,
    step,
    summary,
    ulimits,
)
from podman_support import call as http_call  # noqa: E402

COMPOSE = ROOT / "deploy" / "compose.yaml"
NGINX_IMAGE = "localhost/exposure-nginx:ci"
POSTGRES_IMAGE = "localhost/exposure-postgres:ci"
RECORDS = 20_000
# Inside the pod (one network namespace): where each service listens.
PORTS = {"exposure-1": 8080, "exposure-2": 8081}
NGINX_HTTP, NGINX_HTTPS = 8090, 8443
PROXY_LIMIT_SECONDS = 10 * 2.0  # 10x the documented revocation bound (2 s)


class Pod:
    """The compose services as containers of one podman pod."""

    def __init__(self, name: str, work: Path, compose: dict[str, Any],
                 files: dict[str, Path]) -> None:
        self.name, self.work, self.compose, self.files = name, work, compose, files

    def volume(self, source: str) -> str:
        return f"{self.name}-{source}"

    def args(self, service: str, *, in_pod: bool = True) -> list[str]:
        """`podman run` arguments for a compose service, read from compose.yaml."""
        spec = self.compose["services"][service]
        out = ["--runtime", "runc"]
        if in_pod:
            out += ["--pod", self.name]
        elif spec.get("network_mode") == "none":
            out += ["--network", "none"]
        if spec.get("read_only"):
            out.append("--read-only")
        for option in spec.get("security_opt", []):
            out += ["--security-opt", option.replace(":true", "")]
        for cap in spec.get("cap_drop", []):
            out += ["--cap-drop", cap]
        for name, limit in spec.get("ulimits", {}).items():
            out += ["--ulimit", f"{name}={limit['soft']}:{limit['hard']}"]
        if not spec.get("ulimits"):
            out += ulimits()
        for tmpfs in spec.get("tmpfs", []):
            path, _, options = tmpfs.partition(":")
            out += ["--tmpfs", f"{path}:rw,{options}" if options else path]
        for key, value in (spec.get("environment") or {}).items():
            out += ["-e", f"{key}={value}"]
        for secret in spec.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            target = secret if isinstance(secret, str) else secret.get("target", source)
            out += ["-v", f"{self.files[source]}:/run/secrets/{target}:ro"]
        for volume in spec.get("volumes", []):
            mode = ":ro" if volume.get("read_only") else ""
            if volume["type"] == "volume":
                out += ["-v", f"{self.volume(volume['source'])}:{volume['target']}{mode}"]
            else:
                out += ["-v", f"{self.files[volume['source']]}:{volume['target']}{mode}"]
        if spec.get("entrypoint"):
            out += ["--entrypoint", spec["entrypoint"][0]]
        return out

    def command(self, service: str) -> list[str]:
        spec = self.compose["services"][service]
        command = [str(c) for c in spec.get("command", [])]
        if service in PORTS:  # one network namespace: a port each, the proxy on loopback
            command = [f"--port={PORTS[service]}" if c.startswith("--port=") else
                       "--trusted-proxy=127.0.0.1/32" if c.startswith("--trusted-proxy=")
                       else c for c in command]
        return command


def image_of(service: str) -> str:
    return {"postgres": POSTGRES_IMAGE, "nginx": NGINX_IMAGE}.get(service, IMAGE)


def https(cafile: Path) -> ssl.SSLContext:
    # The test certificate names 127.0.0.1 and localhost too: verified like any other.
    return ssl.create_default_context(cafile=str(cafile))


def call(url: str, context: ssl.SSLContext, body: Any = None, token: str | None = None,
         timeout: float = 10) -> tuple[int, Any]:
    """A GET, or a POST of `body` as JSON, with the API key `token` if any."""
    return http_call("POST" if body is not None else "GET", url, body,
                     {"Authorization": f"Bearer {token}"} if token else None,
                     timeout=timeout, context=context)


def bulk_status(base: str, context: ssl.SSLContext, member: dict[str, str],
                token: str) -> int:
    """The status of a one-line bulk call (nginx sends it to either replica)."""
    request = urllib.request.Request(
        base + "/v1/check/batch", data=json.dumps({"ref": "1", **member}).encode() + b"\n",
        method="POST", headers={"Content-Type": "application/x-ndjson",
                                "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def strong_member(data: Path, skip: set[str] | None = None) -> dict[str, str]:
    with (data / "members-expected.csv").open(encoding="utf-8") as stream:
        strong = {row["ref"] for row in csv.DictReader(stream) if row["match"] == "strong"}
    with (data / "members.csv").open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream, delimiter=";"):
            if row["ref"] in strong and row["nir"] not in (skip or set()):
                return {"nir": row["nir"], "birth_date": row["birth_date"]}
    raise CheckFailed("no strong member in the synthetic file")


def in_pod_get(pod: Pod, service: str, path: str) -> tuple[int, str]:
    """GET `path` from one replica, inside its container (nginx would pick a replica)."""
    probe = ("import urllib.error, urllib.request\n"
             "try:\n"
             f"    answer = urllib.request.urlopen('http://127.0.0.1:{PORTS[service]}{path}',"
             " timeout=2)\n"
             "except urllib.error.HTTPError as exc:\n"
             "    answer = exc\n"
             "print(answer.status)\n"
             "print(answer.read().decode())")
    result = run("podman", "exec", f"{pod.name}-{service}", "python3", "-c", probe,
                 check_status=False)
    status, _, text = result.stdout.partition("\n")
    return (int(status), text) if status.isdigit() else (0, result.stderr)


def served_by(pod: Pod, service: str) -> float:
    """Lookups answered by one replica, from its own /metrics (not reachable via nginx)."""
    series = 'exposure_http_requests_total{method="POST",route="/v1/check",status="200"} '
    return sum(float(line.rsplit(" ", 1)[1])
               for line in in_pod_get(pod, service, "/metrics")[1].splitlines()
               if line.startswith(series))


def wait_for(what: str, condition: Any, timeout: float) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise CheckFailed(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Run deploy/compose.yaml's topology (index build, two replicas, "
        "PostgreSQL, nginx) as a podman pod and check it through nginx (make compose-test).")
    parser.add_argument("--keep", action="store_true", help="leave the pod running")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("compose-test: run as root (rootful podman)", file=sys.stderr)
        return 2
    WHO[0] = "compose-test"
    work = Path(tempfile.mkdtemp(prefix="exposure-compose-test-", dir="/var/tmp"))
    # A pod's infra container takes podman's default limits (nofile 1048576, above this
    # host's hard limit: runc refuses to start it) and has no --ulimit of its own: the
    # limits and the runtime for every container of this run, through containers.conf.
    nofile, nproc = (arg.split("=")[1] for arg in ulimits()[1::2])
    (work / "containers.conf").write_text(
        f'[containers]\ndefault_ulimits = ["nofile={nofile}", "nproc={nproc}"]\n'
        '[engine]\nruntime = "runc"\n')
    os.environ["CONTAINERS_CONF"] = str(work / "containers.conf")
    name = f"exposure-compose-{os.getpid()}"
    try:
        return _main(work, name)
    except CheckFailed as exc:
        print(f"compose-test: FAILED: {exc}", file=sys.stderr)
        for service in ("exposure-1", "exposure-2", "nginx", "postgres"):
            logs = run("podman", "logs", "--tail", "15", f"{name}-{service}",
                       check_status=False)
            print(f"--- {service}\n{(logs.stdout + logs.stderr)[-2500:]}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            run("podman", "pod", "rm", "-f", "-t", "0", name, check_status=False)
            for volume in ("index", "keys-db"):
                run("podman", "volume", "rm", "-f", f"{name}-{volume}", check_status=False)
            shutil.rmtree(work, ignore_errors=True)
        summary("compose-test")


def _secret(path: Path, content: bytes, owner: int, mode: int) -> Path:
    path.write_bytes(content)
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


def _main(work: Path, name: str) -> int:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))

    with step("images (bases cached; exposure, nginx, PostgreSQL stand-in)"):
        build_base, runtime_base = base_images()
        build_service_image(work, build_base, runtime_base)
        podman_build(work, NGINX_IMAGE, "deploy/nginx/Dockerfile", ROOT / "deploy/nginx",
                     {"BASE_IMAGE": runtime_base})
        podman_build(work, POSTGRES_IMAGE, "deploy/ci/postgres.Containerfile",
                     ROOT / "deploy/ci", {"BASE_IMAGE": runtime_base})
        postgres_uid = int(run("podman", "run", "--rm", *ulimits(), "--runtime", "runc",
                               "--entrypoint", "id", POSTGRES_IMAGE, "-u").stdout)

    with step("data, secrets, TLS certificate"):
        dumps_a, dumps_b = work / "dumps-a", work / "dumps-b"
        for seed, directory in ((1, dumps_a), (2, dumps_b)):
            directory.mkdir()
            os.chown(directory, UID, UID)
            run("podman", "run", "--rm", "--runtime", "runc", *ulimits(), "--network", "none",
                "--user", f"{UID}:{UID}", "--read-only", "--tmpfs", "/tmp:rw,noexec",
                "--entrypoint", "exposure-index", "-v", f"{directory}:/data", IMAGE,
                "synth", "--out", "/data", "--records", str(RECORDS), "--seed", str(seed))
        dumps = work / "dumps"
        dumps.symlink_to(dumps_a)
        password = secrets.token_urlsafe(24)
        tls = work / "tls"
        tls.mkdir()
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=exposure.example.fr",
            "-addext", "subjectAltName=DNS:exposure.example.fr,DNS:localhost,IP:127.0.0.1",
            "-keyout", str(tls / "privkey.pem"),
            "-out", str(tls / "fullchain.pem"))
        os.chown(tls / "privkey.pem", 101, 101)
        files = {
            "exposure_pepper": _secret(work / "pepper.key", secrets.token_bytes(32), UID, 0o400),
            "postgres_password": _secret(work / "postgres.password", password.encode(),
                                         postgres_uid, 0o400),
            # libpq ignores a password file that its group or others can read.
            "exposure_keys_pgpass": _secret(work / "keys.pgpass",
                                            f"postgres:5432:exposure:exposure:{password}\n"
                                            .encode(), UID, 0o600),
            "tls_certificate": tls / "fullchain.pem",
            "tls_key": tls / "privkey.pem",
            "${EXPOSURE_DUMPS_DIR:-../var/dumps}": dumps,
            "./nginx/exposure.conf.template": ROOT / "deploy/nginx/exposure.conf.template",
        }
        pod = Pod(name, work, compose, files)

    with step("pod and PostgreSQL up"):
        hosts = [f"--add-host={s}:127.0.0.1" for s in ("postgres", "exposure-1", "exposure-2")]
        run("podman", "pod", "create", "--name", name, *hosts, "-p",
            f"127.0.0.1::{NGINX_HTTPS}")
        run("podman", "run", "-d", "--name", f"{name}-postgres", *pod.args("postgres"),
            POSTGRES_IMAGE)
        wait_for("PostgreSQL ready", lambda: run(
            "podman", "exec", f"{name}-postgres", "pg_isready", "-q", "-h", "127.0.0.1",
            check_status=False).returncode == 0, 60)

    def index_build() -> None:
        run("podman", "run", "--rm", *pod.args("index-build", in_pod=False), IMAGE,
            *pod.command("index-build"))

    with step("index-build job (generation 1)"):
        index_build()

    with step("replicas and nginx up, ready through nginx"):
        for service in ("exposure-1", "exposure-2"):
            run("podman", "run", "-d", "--name", f"{name}-{service}", *pod.args(service),
                IMAGE, *pod.command(service))
        # compose.yaml starts nginx once both replicas are healthy (depends_on). Started
        # before, it counts a replica still loading as failed and leaves it alone for
        # fail_timeout (10 s): every request then goes to the other one.
        for service in ("exposure-1", "exposure-2"):
            wait_for(f"{service} ready", lambda service=service: in_pod_get(
                pod, service, "/readyz")[0] == 200, 90)
        nginx = pod.args("nginx")
        nginx = [a.replace("EXPOSURE_BACKEND_2=exposure-2:8080",
                           f"EXPOSURE_BACKEND_2=exposure-2:{PORTS['exposure-2']}")
                  .replace("EXPOSURE_HTTP_PORT=8080", f"EXPOSURE_HTTP_PORT={NGINX_HTTP}")
                 for a in nginx]
        run("podman", "run", "-d", "--name", f"{name}-nginx", *nginx, NGINX_IMAGE)
        published = run("podman", "port", f"{name}-nginx", str(NGINX_HTTPS)).stdout.strip()
        base = f"https://127.0.0.1:{published.rsplit(':', 1)[1]}"
        context = https(tls / "fullchain.pem")
        wait_for("/v1/sources through nginx", lambda: _ok(base + "/v1/sources", context), 90)

    def keys(*arguments: str) -> str:
        return run("podman", "run", "--rm", *pod.args("exposure-1"), IMAGE, "keys",
                   *arguments).stdout.strip()

    with step("API keys in PostgreSQL, seen by both replicas"):
        token = keys("create", "Compose insurer").splitlines()[-1]
        doomed = keys("create", "Leaving insurer").splitlines()[-1]
        member_a = strong_member(dumps_a)
        for _ in range(8):  # nginx spreads them over both replicas
            status, answer = call(base + "/v1/check", context, member_a, token)
            check(status == 200 and answer["match"] == "strong", f"check: {status} {answer}")
        one, two = served_by(pod, "exposure-1"), served_by(pod, "exposure-2")
        check(one > 0 and two > 0, f"requests not spread: exposure-1 {one}, exposure-2 {two}")
        for _ in range(4):
            check(call(base + "/v1/check", context, member_a, doomed)[0] == 200,
                  "a new key refused")
        listed = keys("list")
        doomed_id = next(line.split()[0] for line in listed.splitlines()
                         if "Leaving insurer" in line)
        keys("revoke", doomed_id)
        seconds = wait_for("revocation through nginx", lambda: all(
            bulk_status(base, context, member_a, doomed) == 401
            for _ in range(6)), PROXY_LIMIT_SECONDS)
        check(bulk_status(base, context, member_a, token) == 200, "the kept key refused")
        print(f"compose-test:   revocation refused by both replicas after {seconds:.1f} s")

    with step("bulk file through nginx with exposure-client"):
        results = work / "results.csv"
        key_file = work / "api.key"
        key_file.write_text(token + "\n")
        key_file.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k != "EXPOSURE_API_KEY"}
        client = run(str(ROOT / ".venv/bin/exposure-client"), "check",
                     str(dumps_a / "members.csv"), "--url", base, "--out", str(results),
                     "--api-key-file", str(key_file), "--ca-file", str(tls / "fullchain.pem"),
                     env=env, check_status=False, timeout=300)
        check(client.returncode == 0, f"exposure-client: {client.stderr[-1500:]}")
        with results.open(encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        found = sum(r["found"] == "true" for r in rows)
        check(len(rows) > 0 and found > 0, f"bulk: {len(rows)} rows, {found} found")
        print(f"compose-test:   bulk: {len(rows)} members, {found} found")

    with step("generation 2 published while serving"):
        member_b = strong_member(dumps_b, skip={member_a["nir"]})
        status, answer = call(base + "/v1/check", context, member_b, token)
        check(status == 200 and not answer["found"], "generation 2's member found too early")
        failures: list[str] = []
        answered = [0]
        stop = threading.Event()

        def keep_checking() -> None:
            while not stop.is_set():
                status, answer = call(base + "/v1/check", context, member_a, token)
                answered[0] += 1
                if status != 200:
                    failures.append(f"{status} {answer}")
        checker = threading.Thread(target=keep_checking)
        checker.start()
        try:
            dumps.unlink()
            dumps.symlink_to(dumps_b)
            index_build()
            seconds = wait_for("generation 2 served by both replicas", lambda: all(
                call(base + "/v1/check", context, member_b, token)[1]["found"]
                for _ in range(6)), 60)
        finally:
            stop.set()
            checker.join(30)
        check(not failures, f"{len(failures)} of {answered[0]} checks failed during the swap: "
              f"{failures[:3]}")
        print(f"compose-test:   new generation served {seconds:.1f} s after the job ended; "
              f"{answered[0]} checks through nginx meanwhile, none failed")

    print("compose-test: OK")
    return 0


def _ok(url: str, context: ssl.SSLContext) -> bool:
    with contextlib.suppress(OSError):
        return call(url, context, timeout=2)[0] == 200
    return False


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
