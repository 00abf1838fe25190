"""What `make container-test` and `make compose-test` share: steps timed and printed,
commands run and checked, podman's limits, the project's image built as deploy/README.md
says, and a JSON call over HTTP(S).

Standard library only: container_test.py runs before any virtualenv exists. Both scripts
import it as a sibling module (deploy/ci is no package).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/exposure-lookup:ci"
UID = 10001  # the image's user (deploy/Dockerfile)
STEP_TIMES: list[tuple[str, float]] = []
WHO = ["container-test"]  # the name steps are printed under; each script sets its own


class CheckFailed(Exception):
    pass


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    print(f"{WHO[0]}: {name} ...", flush=True)
    began = time.monotonic()
    yield
    elapsed = time.monotonic() - began
    STEP_TIMES.append((name, elapsed))
    print(f"{WHO[0]}: {name}: {elapsed:.1f} s", flush=True)


def summary(who: str) -> None:
    print(f"{who}: step times")
    for name, seconds in STEP_TIMES:
        print(f"  {seconds:7.1f} s  {name}")
    print(f"  {sum(s for _, s in STEP_TIMES):7.1f} s  total")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def run(*command: str, capture: bool = True, check_status: bool = True,
        **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, text=True, capture_output=capture, **kwargs)
    if check_status and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:] if capture else ""
        raise CheckFailed(f"{' '.join(command[:4])} ... exited {result.returncode}\n{detail}")
    return result


def ulimits() -> list[str]:
    """Explicit limits: podman's defaults (nofile 1048576) exceed this host's hard limit,
    and runc then refuses to start the container."""
    nofile = min(16384, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # as compose.yaml
    nproc = min(4096, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]

# ----------------------------------------------------------------------------- pip setup


def pip_settings() -> tuple[str, str | None]:
    """The build machine's pip configuration as one pip.conf for the build, and its CA
    bundle. Paths that exist only on this machine (file:// indexes, find-links) are
    left out: the build reaches the registry the way this machine's pip does."""
    listing = run(sys.executable, "-m", "pip", "config", "list", check_status=False).stdout
    settings: dict[str, str] = {}
    for line in listing.splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.split(".", 1)[1] if "." in key else key
        settings[key] = value.strip().strip("'\"")
    for name, value in os.environ.items():  # the environment wins, as for pip itself
        if name.startswith("PIP_") and name not in ("PIP_CONFIG_FILE",):
            settings[name[4:].lower().replace("_", "-")] = value
    ca = settings.pop("cert", None) or os.environ.get("SSL_CERT_FILE")
    keep = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout",
            "retries", "proxy")
    lines = ["[global]"]
    for key in keep:
        value = settings.get(key)
        if not value:
            continue
        values = [v for v in value.split() if not v.startswith("file:")]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    if ca:
        lines.append("cert = /run/secrets/pip_ca")
    return "\n".join(lines) + "\n", ca if ca and Path(ca).is_file() else None


# ----------------------------------------------------------------------------- HTTP


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10, context: ssl.SSLContext | None = None
         ) -> tuple[int, dict[str, Any] | str]:
    """The status and the decoded JSON answer (else its text) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


# ----------------------------------------------------------------------------- images


def prune_old_images() -> None:
    """Earlier builds of the project's image, untagged by this one: ~300 MB each on a
    machine that runs CI again and again. Only dangling images with the image's label."""
    run("podman", "image", "prune", "-f", "--filter", "dangling=true", "--filter",
        "label=org.opencontainers.image.title=exposure-lookup", check_status=False)


def base_images() -> tuple[str, str]:
    """deploy/ci/base-image.sh: (build base, runtime base), made once and cached."""
    bases = run(str(ROOT / "deploy/ci/base-image.sh"), capture=False,
                stdout=subprocess.PIPE).stdout.split()
    check(len(bases) == 2, f"base-image.sh printed {bases}")
    return bases[0], bases[1]


def podman_build(work: Path, tag: str, dockerfile: str, context: Path,
                 build_args: dict[str, str], *, pip: bool = False,
                 ignorefile: str | None = None) -> None:
    """`podman build` as deploy/README.md documents it: runc, the host's network (pip and
    apt reach their registries as this machine does), explicit ulimits, the HEALTHCHECK
    kept (docker format), and with `pip` this machine's pip settings as build secrets."""
    secrets_args: list[str] = []
    if pip:
        pip_conf, ca = pip_settings()
        (work / "pip.conf").write_text(pip_conf)
        secrets_args = ["--secret", f"id=pip_conf,src={work / 'pip.conf'}"]
        if ca:
            secrets_args += ["--secret", f"id=pip_ca,src={ca}"]
    arguments = [f"--build-arg={k}={v}" for k, v in build_args.items()]
    run("podman", "build", "--runtime", "runc", "--network", "host", "--format", "docker",
        *ulimits(), "-f", dockerfile, *(["--ignorefile", ignorefile] if ignorefile else []),
        *arguments, *secrets_args, "-t", tag, str(context), cwd=ROOT)


def build_service_image(work: Path, build_base: str, runtime_base: str) -> int:
    """The project's image from deploy/Dockerfile; its size in bytes."""
    podman_build(work, IMAGE, "deploy/Dockerfile", ROOT,
                 {"PYTHON_IMAGE": build_base, "RUNTIME_IMAGE": runtime_base}, pip=True,
                 ignorefile="deploy/Dockerfile.dockerignore")
    return int(run("podman", "image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
