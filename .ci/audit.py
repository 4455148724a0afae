"""CI gate: fail on installed dependencies with a known vulnerability that has a fix.

Runs ``pip-audit`` over the virtual environment (the project itself, installed editable,
is skipped) and reads its JSON. A vulnerability without a released fix is printed but does
not fail the build: there is nothing to upgrade to. When the vulnerability service cannot
be reached the audit is reported as not done instead of failing every build offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip_audit",
                    "--skip-editable",
                    "--progress-spinner",
                    "off",
                    "--format",
                    "json",
                    "--output",
                    str(out),
                    "--timeout",
                    "30",
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            print("pip-audit: audit not done (timed out)", file=sys.stderr)
            return 0
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            reason = tail[-1] if tail else f"exit code {proc.returncode}"
            print(f"pip-audit: audit not done ({reason})", file=sys.stderr)
            return 0
        report = json.loads(out.read_text())
    fixable: list[str] = []
    unfixed: list[str] = []
    skipped = 0
    audited = 0
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped += 1
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            line = f"{dep['name']} {dep['version']}: {vuln['id']}"
            if vuln.get("fix_versions"):
                fixable.append(f"{line} (fixed in {', '.join(vuln['fix_versions'])})")
            else:
                unfixed.append(f"{line} (no fix released)")
    print(f"pip-audit: {audited} packages audited, {skipped} not found in the advisory source")
    for line in unfixed:
        print(f"pip-audit: warning: {line}")
    for line in fixable:
        print(f"pip-audit: {line}", file=sys.stderr)
    return 1 if fixable else 0


if __name__ == "__main__":
    raise SystemExit(main())
