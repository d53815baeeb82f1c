"""Check layer: invariants and verdicts (stable IDs) over a run's trace."""
