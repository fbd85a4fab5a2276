"""Application layer: configuration, wiring of a trading node, CLI, dashboard, reports."""
