"""Framework adapters (``lightning``, ``keras``, ``sklearn``) and optional built-in plugins.

Each module imports its framework lazily, so importing this package costs nothing.
"""
