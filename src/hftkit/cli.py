"""The ``hftkit`` entry point: the app's commands plus ``hftkit bench``.

It sits above ``app`` and ``bench`` in the layers, so neither imports the other to make one
command line.
"""

from __future__ import annotations

from hftkit.app.cli import app
from hftkit.bench.cli import bench

app.command()(bench)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
