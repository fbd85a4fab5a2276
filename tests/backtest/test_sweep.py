"""Parameter sweeps: grid files, one row per point, local processes and a Dask cluster, same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from hftkit.app.backtest_plan import run_sweep
from hftkit.app.sweep_cli import RESULTS_FILE, sweep_command
from hftkit.backtest.sweep import (
    GridError,
    SweepResult,
    apply_overrides,
    load_grid,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backtest_maker.yaml"
BASE: dict[str, Any] = {
    "environment": "backtest",
    "strategies": [
        {"name": "maker", "path": "pkg:Maker", "params": {"gamma": 0.1}},
        {"name": "hedger", "path": "pkg:Hedger", "params": {}},
    ],
    "backtest": {"seed": 7},
}


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _short_example(folder: Path, seconds: int = 10) -> Path:
    """The shipped example config cut to ``seconds`` of its recording (a sweep test runs it often)."""
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    config["range"] = {"start": "2024-08-08T23:54:30Z", "end": f"2024-08-08T23:54:{30 + seconds}Z"}
    return _write(folder / "base.yaml", config)


# the grid file ------------------------------------------------------------------------------------
def test_overrides_reach_list_items_by_name_or_index_and_add_missing_keys() -> None:
    changed = apply_overrides(
        BASE,
        [
            ("strategies.maker.params.gamma", 0.3),
            ("strategies.1.params.ratio", 2),
            ("backtest.seed", 11),
            ("latency.ack.constant_us", 50),  # a section the base leaves out
        ],
    )
    assert changed["strategies"][0]["params"] == {"gamma": 0.3}
    assert changed["strategies"][1]["params"] == {"ratio": 2}
    assert changed["backtest"]["seed"] == 11
    assert changed["latency"] == {"ack": {"constant_us": 50}}
    assert BASE["strategies"][0]["params"]["gamma"] == 0.1  # the base is not changed


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("strategies.taker.params.gamma", "no item named 'taker' \\(names: maker, hedger\\)"),
        ("strategies.5.params.gamma", "index out of range"),
        ("environment.kind", "environment is a value, not a section"),
    ],
)
def test_overrides_that_point_nowhere_are_grid_errors(path: str, message: str) -> None:
    with pytest.raises(GridError, match=message):
        apply_overrides(BASE, [(path, 1)])


def test_points_are_every_combination_in_grid_order(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", BASE)
    grid = load_grid(
        _write(
            tmp_path / "grid.yaml",
            {
                "base": "base.yaml",
                "parameters": {"strategies.maker.params.gamma": [0.1, 0.2], "backtest.seed": [1, 2, 3]},
            },
        )
    )
    points = grid.points()
    assert [point.index for point in points] == list(range(6))
    assert points[0].values == (("strategies.maker.params.gamma", 0.1), ("backtest.seed", 1))
    assert points[1].values == (("strategies.maker.params.gamma", 0.1), ("backtest.seed", 2))
    assert points[5].values == (("strategies.maker.params.gamma", 0.2), ("backtest.seed", 3))
    assert grid.directory == tmp_path.resolve()


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"parameters": {"backtest.seed": [1]}}, "`base:` must name"),
        ({"base": "missing.yaml", "parameters": {"backtest.seed": [1]}}, "missing.yaml: No such file"),
        ({"base": "base.yaml"}, "`parameters:` must map"),
        ({"base": "base.yaml", "parameters": {"backtest.seed": 1}}, "give a non-empty list"),
        ({"base": "base.yaml", "parameters": {"backtest..seed": [1]}}, "is not a dotted path"),
        ({"base": "base.yaml", "parameters": {"backtest.seed": [1]}, "seeds": 2}, "unknown key\\(s\\) seeds"),
    ],
)
def test_a_grid_that_cannot_run_says_why(tmp_path: Path, grid: dict[str, Any], message: str) -> None:
    _write(tmp_path / "base.yaml", BASE)
    with pytest.raises(GridError, match=message):
        load_grid(_write(tmp_path / "grid.yaml", grid))


def test_a_misspelt_config_path_fails_the_sweep_before_any_point_runs(tmp_path: Path) -> None:
    base = _short_example(tmp_path)
    grid = _write(tmp_path / "grid.yaml", {"base": base.name, "parameters": {"backtest.sed": [1, 2]}})
    with pytest.raises(GridError, match=r"point 0 \(backtest.sed=1\).*did you mean `seed`"):
        run_sweep(grid, workers=1)
    assert sweep_command(str(grid), None, str(tmp_path / "out"), 1) == 2
    assert not (tmp_path / "out").exists()


def test_points_that_fail_become_rows_with_their_error_and_the_exit_code_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _short_example(tmp_path)
    grid = _write(
        tmp_path / "grid.yaml",
        {"base": base.name, "parameters": {"data.0.files": [["missing-1.gz"], ["missing-2.gz"]]}},
    )
    result = run_sweep(grid, workers=1)
    assert result.failures == 2
    assert [row["point"] for row in result.rows] == [0, 1]
    assert "missing-1.gz" in result.rows[0]["error"]
    assert "missing-2.gz" in result.rows[1]["error"]
    assert sweep_command(str(grid), None, str(tmp_path / "out"), 1) == 1
    table = pq.read_table(tmp_path / "out" / RESULTS_FILE).to_pydict()
    assert table["data.0.files"] == ['["missing-1.gz"]', '["missing-2.gz"]']  # lists as JSON text
    assert "2 failed" in capsys.readouterr().out


def test_results_table_orders_columns_and_types_mixed_values() -> None:
    result = SweepResult(
        rows=[
            {"point": 1, "x": "fast", "error": "", "pnl_net": 1.5, "inventory.max": 2},
            {"point": 0, "x": 3, "error": "boom", "extra": True},
        ],
        parameters=["x"],
    )
    assert result.columns() == ["point", "x", "error", "pnl_net", "inventory.max", "extra"]
    table = result.to_arrow().to_pydict()
    assert table["x"] == ['"fast"', "3"]  # a string beside a number: one JSON-text column
    assert table["pnl_net"] == [1.5, None]
    assert result.failures == 1


# running: local processes and a Dask cluster ------------------------------------------------------
GRID = {"strategies.maker.params.gamma": [0.05, 0.3], "backtest.seed": [1, 2]}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The grid run once through the CLI on two local processes: (grid file, Parquet table)."""
    folder = tmp_path_factory.mktemp("sweep")
    base = _short_example(folder)
    grid = _write(folder / "grid.yaml", {"base": base.name, "parameters": GRID})
    assert sweep_command(str(grid), None, str(folder / "out"), 2) == 0
    return grid, folder / "out" / RESULTS_FILE


@pytest.mark.slow
def test_local_sweep_runs_every_point_on_worker_processes(local_sweep: tuple[Path, Path]) -> None:
    _, table_path = local_sweep
    table = pq.read_table(table_path).to_pandas()
    assert list(table["point"]) == [0, 1, 2, 3]
    assert list(table["strategies.maker.params.gamma"]) == [0.05, 0.05, 0.3, 0.3]
    assert list(table["backtest.seed"]) == [1, 2, 1, 2]
    assert list(table["seed"]) == [1, 2, 1, 2]  # the summary's own record of what ran
    assert (table["error"] == "").all()
    assert (table["events"] > 0).all()
    for column in ("pnl_net", "pnl_gross", "fees", "fills", "fill_ratio", "max_drawdown", "inventory.max"):
        assert column in table.columns
    # the points really differ (the order count alone may not: each point can spend the whole
    # rate budget of the account)
    assert table["pnl_net"].nunique() > 1


@pytest.mark.slow
def test_dask_cluster_sweep_gives_the_same_table_byte_for_byte(
    local_sweep: tuple[Path, Path], tmp_path: Path
) -> None:
    from distributed import LocalCluster

    grid, local_table = local_sweep
    seen: list[int] = []
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        result = run_sweep(
            grid, scheduler=cluster.scheduler_address, progress=lambda row, done, total: seen.append(done)
        )
    assert seen == [1, 2, 3, 4]
    path = result.write_parquet(tmp_path / RESULTS_FILE)
    assert path.read_bytes() == local_table.read_bytes()


@pytest.mark.slow
def test_one_process_running_the_same_point_twice_gives_the_same_row(tmp_path: Path) -> None:
    """Points share the recordings a process has read: sharing must not change a result."""
    base = _short_example(tmp_path, seconds=5)
    grid = _write(
        tmp_path / "grid.yaml",
        {"base": base.name, "parameters": {"strategies.maker.params.gamma": [0.2, 0.2]}},
    )
    first, second = run_sweep(grid, workers=1).rows
    assert first.pop("point") == 0 and second.pop("point") == 1
    assert first == second and first["error"] == ""
