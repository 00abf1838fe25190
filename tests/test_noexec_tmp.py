"""Private lookups with `$TMPDIR` on a `noexec` mount, as in the shipped containers.

A container's /tmp is a `noexec` tmpfs (deploy/compose.yaml, the Kubernetes manifests,
`make container-test`). rbcl, the binding used before, copied libsodium into `$TMPDIR`
and loaded it from there: the service died at start with "failed to map segment from
shared object". libsodium is now the system's, loaded where it lies.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import REPO, build_private_crafted, clean_env, live_server


@contextlib.contextmanager
def noexec_tmpfs(path: Path) -> Iterator[None]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=1777,noexec,nosuid",
                              "tmpfs", str(path)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here (root needed: {mounted.stderr.strip()})"
        if os.environ.get("CI"):  # CI runs as root: a skip there would hide the check
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def test_the_service_starts_and_evaluates_with_a_noexec_tmpdir(tmp_path: Path) -> None:
    built = build_private_crafted(tmp_path / "breach")
    tmp = tmp_path / "noexec-tmp"
    with noexec_tmpfs(tmp):
        # The mount really refuses to map code: a copy of an executable cannot run.
        probe = tmp / "probe"
        probe.write_bytes(Path(sys.executable).read_bytes())
        probe.chmod(0o755)
        with pytest.raises(PermissionError):
            subprocess.run([str(probe), "-c", "pass"], timeout=30)
        probe.unlink()

        env = clean_env(TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp))
        with live_server(built.crafted.index_dir, built.crafted.pepper_file, tmp_path / "serve",
                         "--oprf-key-file", str(built.oprf_key_file), env=env) as server:
            answer = server.request("GET", "/v1/private/params")
            assert answer.status == 200, server.log_text()
            assert answer.json()["suite"] == "ristretto255-SHA512"
        # Nothing was unpacked there either.
        assert list(tmp.iterdir()) == []

        # The index builder loads the same code: `--private` builds with the same TMPDIR.
        build = subprocess.run(
            [sys.executable, "-c", "import indexer.private.oprf as o; "
             "print(len(o.evaluate(o.generate_private_key(), b'x')))"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert build.returncode == 0 and build.stdout.strip() == "64", build.stderr
