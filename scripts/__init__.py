"""Operational scripts (the SLURM proof)."""
