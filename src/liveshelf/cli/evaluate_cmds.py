"""Commands: evaluate_cmds (filled in by its owner)."""

from liveshelf.cli.app import app  # noqa: F401
