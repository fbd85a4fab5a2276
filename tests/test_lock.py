"""The checked-in locks: complete, hashed, consistent with pyproject.toml, and what is installed."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from hftkit.bench import lock

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCKS = ("runtime.lock", "dev.lock", "peers.lock", "fuzz.lock")


def _requirement_name(requirement: str) -> str:
    return lock.normalize(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])


def _names(requirements: list[str]) -> set[str]:
    return {_requirement_name(item) for item in requirements}


def _pinned_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Each ``name==version`` line of a lock with the hash lines that follow it."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if "==" in stripped and not stripped.startswith(("#", "--")):
            blocks.append((stripped, []))
        elif stripped.startswith("--hash=sha256:") and blocks:
            blocks[-1][1].append(stripped)
    return blocks


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_in_a_lock_carries_hashes(name):
    blocks = _pinned_blocks((REQUIREMENTS / name).read_text(encoding="utf-8"))
    assert len(blocks) > 20
    unhashed = [pin for pin, hashes in blocks if not hashes]
    assert unhashed == []


@pytest.mark.parametrize(
    ("name", "extras"),
    [
        ("runtime.lock", ()),
        ("dev.lock", ("dev",)),
        ("peers.lock", ("dev", "peers")),
        ("fuzz.lock", ("dev", "fuzz")),
    ],
)
def test_each_lock_pins_every_declared_dependency_and_the_build_backend(name, extras):
    project = PYPROJECT["project"]
    wanted = _names(project["dependencies"]) | _names(PYPROJECT["build-system"]["requires"])
    pending = list(extras)
    while pending:  # an extra may name others of hftkit's own ("hftkit[postgres,report]")
        for requirement in project["optional-dependencies"][pending.pop()]:
            if _requirement_name(requirement) == "hftkit":
                pending.extend(re.search(r"\[(.*)\]", requirement).group(1).split(","))
            else:
                wanted.add(_requirement_name(requirement))
    pinned = set(lock.locked_versions(REQUIREMENTS / name)) | {
        # pins behind a marker that does not apply here (win32-only) still count as pinned
        lock.normalize(pin.split("==", 1)[0])
        for pin, _ in _pinned_blocks((REQUIREMENTS / name).read_text(encoding="utf-8"))
    }
    assert wanted - pinned == set()


def test_runtime_and_peers_locks_hold_the_dev_versions():
    """hftkit runs on one set in production, in the tests and beside the benchmark peers."""
    dev = lock.locked_versions(REQUIREMENTS / "dev.lock")
    for name in ("runtime.lock", "peers.lock", "fuzz.lock"):
        other = lock.locked_versions(REQUIREMENTS / name)
        moved = {key: (dev[key], value) for key, value in other.items() if key in dev and dev[key] != value}
        assert moved == {}, name


def test_pyproject_keeps_lower_bounds_and_no_pins():
    project = PYPROJECT["project"]
    everything = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        everything.extend(extra)
    assert [item for item in everything if "==" in item or "<" in item] == []


def test_build_inputs_mirror_the_build_system_requirements():
    lines = (REQUIREMENTS / "build.in").read_text(encoding="utf-8").splitlines()
    listed = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert set(PYPROJECT["build-system"]["requires"]) <= listed


@pytest.mark.skipif(
    os.environ.get("HFTKIT_UNLOCKED") == "1", reason="make test-latest runs the newest allowed versions"
)
def test_the_installed_set_is_the_locked_set():
    assert [str(item) for item in lock.differences(REQUIREMENTS / "dev.lock")] == []


def test_differences_name_a_changed_and_a_missing_package(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text(
        "# comment\n"
        "pytest==0.0.1 \\\n    --hash=sha256:00\n"
        "surely-not-installed-package==1.0 \\\n    --hash=sha256:11\n"
        "colorama==0.4.6 ; sys_platform == 'no-such-platform' \\\n    --hash=sha256:22\n",
        encoding="utf-8",
    )
    assert set(lock.locked_versions(path)) == {"pytest", "surely-not-installed-package"}
    found = {item.name: item for item in lock.differences(path)}
    assert found["pytest"].locked == "0.0.1" and found["pytest"].installed not in (None, "0.0.1")
    assert found["surely-not-installed-package"].installed is None
    assert "not installed" in str(found["surely-not-installed-package"])
    assert "differs" in lock.describe(path) and lock.main([str(path)]) == 1
    assert lock.describe(tmp_path / "absent.lock") == "no lock file beside this install"
