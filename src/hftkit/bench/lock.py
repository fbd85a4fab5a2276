"""The installed versions against the checked-in lock (requirements/*.lock).

Benchmarks and ``make test-latest`` say which set they ran on: a figure is only comparable with
another taken on the same locked versions, and an upgrade shows up as a named difference.
Run as ``python -m hftkit.bench.lock [LOCKFILE]``: prints each difference, exits 1 if any.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# name==version, then an optional environment marker (uv's universal lock writes one per fork)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")

#: The lock a source checkout installs (``make test``, ``make run``, ``make bench``).
DEFAULT_LOCK = Path(__file__).resolve().parents[3] / "requirements" / "dev.lock"
#: The lock of the peers environment (``make bench-peers``): the dev set plus the peers.
PEERS_LOCK = DEFAULT_LOCK.with_name("peers.lock")


@dataclass(frozen=True)
class Difference:
    """One package whose installed version is not the locked one (``installed`` None: missing)."""

    name: str
    locked: str
    installed: str | None

    def __str__(self) -> str:
        found = self.installed if self.installed is not None else "not installed"
        return f"{self.name} {found} (lock {self.locked})"


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Nautilus_Trader`` and ``nautilus-trader`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_applies(marker: str | None) -> bool:
    if marker is None:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # no evaluator: a pin behind a marker is not checked
        return False
    return Marker(marker).evaluate()


def locked_versions(path: Path) -> dict[str, str]:
    """The pins of a lock file that apply to this interpreter and platform, by normalized name."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        found = _PIN.match(line.strip())
        if found and _marker_applies(found.group(3)):
            pins[normalize(found.group(1))] = found.group(2)
    return pins


def differences(path: Path = DEFAULT_LOCK) -> list[Difference]:
    """Every locked package whose installed version differs, sorted by name."""
    found: list[Difference] = []
    for name, locked in sorted(locked_versions(path).items()):
        try:
            installed: str | None = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != locked:
            found.append(Difference(name, locked, installed))
    return found


def describe(path: Path | None = None) -> str:
    """One line for a benchmark's versions: which lock, and whether the installed set is it.

    With no path, the lock of this environment: the dev or the peers lock, whichever the
    installed set is closer to (``make bench`` and ``make bench-peers`` install one each).
    """
    if path is None:
        candidates = [item for item in (DEFAULT_LOCK, PEERS_LOCK) if item.is_file()]
        if not candidates:
            return "no lock file beside this install"
        path = min(candidates, key=lambda item: len(differences(item)))
    elif not path.is_file():
        return "no lock file beside this install"
    different = differences(path)
    where = f"requirements/{path.name}"
    if not different:
        return f"{where} (installed set matches)"
    return f"{where}, differs: " + ", ".join(str(item) for item in different)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    path = Path(arguments[0]) if arguments else DEFAULT_LOCK
    if not path.is_file():
        print(f"no lock file at {path}", file=sys.stderr)
        return 2
    different = differences(path)
    for item in different:
        print(item)
    print(f"{len(different)} of {len(locked_versions(path))} locked packages differ from {path}")
    return 1 if different else 0


if __name__ == "__main__":
    raise SystemExit(main())
