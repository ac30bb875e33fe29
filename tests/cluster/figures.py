"""What the cluster tests measured, printed at the end of the run (the README's Cluster figures)."""

MEASURED: list[str] = []
