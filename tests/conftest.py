"""Fixtures every test folder may use: real services, installed when absent.

A service test needs the real server (Prometheus, InfluxDB, Chromium from Debian's packages). When
the binary is missing, the fixture installs the package (we run as root in CI); if that is not
possible it fails loudly under ``CI=true`` and skips with the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

_APT_UPDATED = False


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _install(package: str) -> str | None:
    """apt-get install ``package``; returns why it failed, or None."""
    global _APT_UPDATED
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if not _APT_UPDATED:
            subprocess.run(
                ["apt-get", "update", "-qq"], check=True, capture_output=True, env=environment, timeout=600
            )
            _APT_UPDATED = True
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            check=True,
            capture_output=True,
            env=environment,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = getattr(error, "stderr", b"") or b""
        return f"apt-get install {package} failed: {output.decode(errors='replace')[-300:]}"
    return None


@pytest.fixture(scope="session")
def debian_binary() -> Callable[[str, str], str]:
    """``debian_binary("prometheus", "prometheus")`` -> the binary's path, installing it if absent."""

    def ensure(binary: str, package: str) -> str:
        found = shutil.which(binary)
        if found:
            return found
        problem = _install(package)
        found = shutil.which(binary)
        if found:
            return found
        message = f"{binary} (Debian package {package}) is missing: {problem or 'not on PATH after install'}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    return ensure
