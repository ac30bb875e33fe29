"""What the cluster tests measured, printed at the end of the run."""

MEASURED: list[str] = []
