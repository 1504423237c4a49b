"""Private helpers shared by the framework adapters (not part of the public API)."""
