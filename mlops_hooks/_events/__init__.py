"""The private parts of :mod:`mlops_hooks.events`: its field types (``fields``) and its errors.

Import the public names from :mod:`mlops_hooks.events`, which re-exports them.
"""
