"""The `relora` command line: thin wrappers, one library call per subcommand, one module per room."""

from relora.cli import bench, core, fleet  # noqa: F401  (registers the subcommands)
from relora.cli.app import main

__all__ = ["main"]
