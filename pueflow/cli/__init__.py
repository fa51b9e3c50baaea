"""Command line: ``pueflow VERB`` (the parser in :mod:`.app`, the verbs in :mod:`.verbs`)."""

from pueflow.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
