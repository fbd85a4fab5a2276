"""``hftkit bench``: run a suite and print its figures (table, Markdown for BENCHMARKS.md, or JSON).

The entry point (``hftkit.cli``) registers this command beside the app's; the app itself never
imports the benchmarks (they sit above it in the layers).
"""

from __future__ import annotations

import importlib
import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from hftkit.bench.harness import BenchOptions, BenchResult, format_value, versions

# Benchmark suites in the order `hftkit bench all` runs them: module hftkit.bench.<name>.
BENCH_SUITES = ("core", "book", "sim", "trading", "venues", "storage", "backtest", "bus")
# Suites run only by name, never by `all`: the soak takes ten minutes (`--quick`: 20 s); the
# node bench starts a simulator and a dozen trading processes (about two minutes).
SEPARATE_SUITES = ("soak", "node")


def bench(
    suite: str = typer.Argument(
        ..., help=f"suite to run: {', '.join(BENCH_SUITES + SEPARATE_SUITES)} or all"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document instead of a table"),
    as_markdown: bool = typer.Option(False, "--markdown", help="print Markdown tables (for BENCHMARKS.md)"),
    quick: bool = typer.Option(False, "--quick", help="short smoke run (figures not for the record)"),
    repeat: int = typer.Option(7, "--repeat", min=1, help="timed repeats per figure (median is reported)"),
) -> None:
    """Run a benchmark suite; figures are medians beside baselines measured in the same run."""
    names = BENCH_SUITES if suite == "all" else (suite,)
    unknown = [name for name in names if name not in BENCH_SUITES + SEPARATE_SUITES]
    if unknown:
        choices = ", ".join(BENCH_SUITES + SEPARATE_SUITES)
        raise typer.BadParameter(f"unknown suite {unknown[0]!r}; choose from {choices}, all")
    options = BenchOptions(repeat=repeat, quick=quick)
    documents = []
    for name in names:
        module = importlib.import_module(f"hftkit.bench.{name}")
        results: list[BenchResult] = module.run(options)
        peers = getattr(module, "PEERS", ())
        found = versions(peers)
        documents.append(
            {
                "suite": name,
                "results": [result.as_json() for result in results],
                "versions": found,
            }
        )
        if as_markdown:
            sys.stdout.write(_markdown(name, results, found, repeat, quick))
        elif not as_json:
            _print_table(name, results)
    if as_markdown:
        return
    if as_json:
        json.dump(documents[0] if len(documents) == 1 else documents, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        Console().print(f"versions: {documents[-1]['versions']}")


def _markdown(suite: str, results: list[BenchResult], found: dict[str, str], repeat: int, quick: bool) -> str:
    command = (
        f"hftkit bench {suite}"
        + (f" --repeat {repeat}" if repeat != 7 else "")
        + (" --quick" if quick else "")
    )
    lines = [
        f"### `{command}`",
        "",
        "versions: " + ", ".join(f"{key} {value}" for key, value in found.items()),
        "",
        "| figure | hftkit | baseline (same run) | baseline value | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        baseline_value = (
            "" if result.baseline_value is None else format_value(result.baseline_value, result.unit)
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    result.name.replace("|", "/"),
                    format_value(result.value, result.unit),
                    (result.baseline or "").replace("|", "/"),
                    baseline_value,
                    "" if result.ratio is None else f"{result.ratio:.2f}x",
                    (result.target or "").replace("|", "/"),
                    {True: "yes", False: "**no**", None: ""}[result.met],
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n\n"


def _print_table(suite: str, results: list[BenchResult]) -> None:
    table = Table(title=f"hftkit bench {suite}", show_lines=False)
    for column in ("figure", "hftkit", "baseline", "baseline value", "ratio", "target", "met"):
        table.add_column(column)
    for result in results:
        table.add_row(
            result.name,
            format_value(result.value, result.unit),
            result.baseline or "",
            "" if result.baseline_value is None else format_value(result.baseline_value, result.unit),
            "" if result.ratio is None else f"{result.ratio:.2f}x",
            result.target or "",
            {True: "yes", False: "NO", None: ""}[result.met],
        )
    Console().print(table)
