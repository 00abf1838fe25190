"""The hashed lock (issue 14, item 9): what `make install`, CI and the image install.

requirements/runtime.txt and requirements/dev.txt are pip-compile's output with hashes
(`make lock` refreshes them); every dependency of pyproject.toml is pinned in them, in
its bounds, and the environment the tests run in is exactly the lock. `make audit`
audits the lock and says NOT AUDITED, honestly, when no advisory data can be reached.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
RUNTIME, DEV = REPO / "requirements" / "runtime.txt", REPO / "requirements" / "dev.txt"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)")


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a pip-compile lock."""
    found: dict[str, tuple[str, int]] = {}
    name = ""
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            found[name] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = found[name]
            found[name] = (version, hashes + 1)
    return found


def project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as stream:
        return tomllib.load(stream)["project"]  # type: ignore[no-any-return]


def test_every_dependency_is_pinned_with_hashes_within_its_bounds() -> None:
    runtime, dev = pins(RUNTIME), pins(DEV)
    declared = project()
    optional = declared["optional-dependencies"]
    assert isinstance(optional, dict)
    for lock, requirements in ((runtime, declared["dependencies"]),
                               (dev, [*declared["dependencies"], *optional["dev"]])):
        assert isinstance(requirements, list)
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{name} is not in the lock: run `make lock`"
            version, _ = lock[name]
            assert requirement.specifier.contains(version, prereleases=True), (name, version)
    for lock in (runtime, dev):
        assert all(hashes > 0 for _, hashes in lock.values())
    build = pins(REPO / "requirements" / "build.txt")
    assert {"pip", "setuptools", "wheel"} <= build.keys()
    assert all(dev[name][0] == version for name, (version, _) in build.items())
    # The image (runtime) and the tests (dev) run the same versions of the runtime.
    assert {name: runtime[name][0] for name in runtime} == \
        {name: dev[name][0] for name in runtime}


def test_aiohttp_is_bounded_to_the_minor_version_tested() -> None:
    dependencies = project()["dependencies"]
    assert isinstance(dependencies, list)
    aiohttp = next(Requirement(d) for d in dependencies if d.startswith("aiohttp"))
    upper = [s for s in aiohttp.specifier if s.operator == "<"]
    assert upper and re.fullmatch(r"\d+\.\d+", upper[0].version)  # service/protocol.py
    assert pins(RUNTIME)["aiohttp"][0].startswith(
        f"{upper[0].version.split('.')[0]}.{int(upper[0].version.split('.')[1]) - 1}.")


def test_the_environment_is_the_lock() -> None:
    """What the tests run on is what the lock says, build tools included (the venv of
    `make install`; setuptools 65.5.0 came with Python's ensurepip before)."""
    for name, (version, _) in pins(DEV).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"{name} of the lock is not installed: make install") from None
        assert installed == version, (name, installed, version)


def test_make_install_the_image_and_the_audit_use_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "LOCK := requirements/dev.txt" in makefile
    assert "pip install -q --require-hashes --no-deps -r $(LOCK)" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert "tools/audit_dependencies.py --lock $(LOCK)" in makefile
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install --require-hashes --no-deps -r requirements/runtime.txt" in dockerfile
    assert "pip install --require-hashes --no-deps -r requirements/build.txt" in dockerfile


FAKE_PIP_AUDIT = """#!{python}
import json, sys
open({record!r}, "w").write(json.dumps(sys.argv[1:]))
print(json.dumps({report}))
sys.exit({status})
"""


def _audit(tmp_path: Path, report: object, status: int, *extra: str) -> tuple[int, str, list[str]]:
    record = tmp_path / "args.json"
    fake = tmp_path / "pip-audit"
    fake.write_text(FAKE_PIP_AUDIT.format(python=sys.executable, record=str(record),
                                          report=json.dumps(report), status=status))
    fake.chmod(0o755)
    lock = tmp_path / "lock.txt"
    lock.write_text("aiohttp==3.14.5 \\\n    --hash=sha256:00\nyarl==1.25.1 \\\n"
                    "    --hash=sha256:11\n")
    result = subprocess.run([sys.executable, str(REPO / "tools" / "audit_dependencies.py"),
                             "--pip-audit", str(fake), "--lock", str(lock), *extra],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": ""})
    return result.returncode, result.stdout + result.stderr, json.loads(record.read_text())


def test_the_audit_reads_the_lock_and_says_when_it_could_not(tmp_path: Path) -> None:
    unreachable = {"dependencies": [
        {"name": n, "version": v, "skip_reason": f"Dependency not found on PyPI: {n} ({v})"}
        for n, v in (("aiohttp", "3.14.5"), ("yarl", "1.25.1"))]}
    status, said, args = _audit(tmp_path, unreachable, 0)
    assert status == 0 and "NOT AUDITED: 2 of 2" in said
    assert "--require-hashes" in args and str(tmp_path / "lock.txt") in args
    assert _audit(tmp_path, unreachable, 0, "--strict")[0] == 1
    vulnerable = {"dependencies": [{"name": "yarl", "version": "1.25.1", "vulns": [
        {"id": "GHSA-xxxx", "fix_versions": ["1.26"]}]}]}
    status, said, _ = _audit(tmp_path, vulnerable, 1)
    assert status == 1 and "VULNERABLE yarl 1.25.1: GHSA-xxxx" in said
