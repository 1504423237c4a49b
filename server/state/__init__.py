"""What the server knows.

The current state (models, runs, system, activity) that snapshots and the REST fallback serve,
per-run series, and the SQLite history that survives restarts.
"""
