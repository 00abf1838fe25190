"""`make audit`: pip-audit on the hashed lock, and an honest verdict.

The lock that `make install`, CI and the image install from (requirements/dev.txt, the
runtime's pins included; `--lock` names another) is audited with pip-audit against
PyPI's vulnerability data, without resolving anything again (`--no-deps --disable-pip
--require-hashes`). `--installed` audits what `pip freeze` lists instead. Three outcomes:

- a known vulnerability in some dependency: exit 1, whatever else happened;
- every dependency audited and none vulnerable: exit 0, "clean";
- some or all dependencies could not be audited (the vulnerability service is
  unreachable, or does not know the version): this is NOT a clean result and is said
  so on stderr with the count; exit 1 with --strict, else 0 so that an offline
  machine can still run the rest of `make test` (CI sets neither: see README).

A vulnerability that is accepted goes into IGNORED below with the reason.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "dev.txt"

# Vulnerability id -> why it does not apply here. Empty: none is accepted.
IGNORED: dict[str, str] = {}


def freeze(python: str) -> str:
    result = subprocess.run([python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True, timeout=120)
    return result.stdout


def audit(pip_audit: str, lock: Path, timeout: int, *, hashed: bool
          ) -> tuple[int, dict[str, object] | None, str]:
    command = [pip_audit, "--requirement", str(lock), "--no-deps", "--disable-pip",
               *(["--require-hashes"] if hashed else []),
               "--vulnerability-service", "pypi", "--format", "json",
               "--progress-spinner", "off", "--timeout", str(timeout)]
    for vulnerability in IGNORED:
        command += ["--ignore-vuln", vulnerability]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = None
    return result.returncode, report, result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the environment to audit")
    parser.add_argument("--pip-audit", default=str(Path(sys.executable).with_name("pip-audit")))
    parser.add_argument("--strict", action="store_true",
                        help="fail when any dependency could not be audited")
    parser.add_argument("--timeout", type=int, default=15, help="network timeout (s)")
    parser.add_argument("--lock", type=Path, default=LOCK,
                        help=f"the hashed lock to audit (default {LOCK})")
    parser.add_argument("--installed", action="store_true",
                        help="audit the installed distributions (pip freeze), not the lock")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="exposure-audit-") as scratch:
        if args.installed:
            lock = Path(scratch) / "requirements.lock"
            lock.write_text(freeze(args.python))
            hashed = False
        else:
            lock, hashed = args.lock, True
        pinned = [line for line in lock.read_text().splitlines()
                  if "==" in line and not line.lstrip().startswith("#")]
        status, report, stderr = audit(args.pip_audit, lock, args.timeout, hashed=hashed)

    if report is None:
        last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"pip-audit: NOT AUDITED: pip-audit gave no report (exit {status}), the "
              f"vulnerability service is probably unreachable: {last}. This is not a clean "
              "result: run `make audit AUDIT_STRICT=1` where PyPI is reachable.",
              file=sys.stderr)
        return 1 if args.strict else 0
    dependencies = report.get("dependencies", [])
    assert isinstance(dependencies, list)
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            print(f"pip-audit: VULNERABLE {dependency['name']} {dependency['version']}: "
                  f"{vuln['id']} (fixed in {fixed})", file=sys.stderr)
    if skipped:
        reasons = sorted({str(d["skip_reason"]).split(":")[0] for d in skipped})
        print(f"pip-audit: NOT AUDITED: {len(skipped)} of {len(pinned)} pinned dependencies "
              f"could not be checked ({'; '.join(reasons)}). This is not a clean result: "
              "run `make audit AUDIT_STRICT=1` where PyPI's vulnerability data is reachable "
              "(from these machines it is not: docs/operations.md, dependencies).",
              file=sys.stderr)
    if vulnerable:
        return 1
    if skipped:
        return 1 if args.strict else 0
    print(f"pip-audit: clean: {len(dependencies)} pinned dependencies audited, "
          f"no known vulnerability" + (f" ({len(IGNORED)} ignored)" if IGNORED else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
