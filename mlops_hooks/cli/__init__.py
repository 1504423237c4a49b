"""The ``mlops-hooks`` command line: ``serve``, ``emit``, ``sync``, ``plugins`` and ``demo``.

A command package beside the library: nothing in the library core imports it. The demo
(:mod:`mlops_hooks.cli.demo`) lives here too, as the application it is.
"""

from mlops_hooks.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
