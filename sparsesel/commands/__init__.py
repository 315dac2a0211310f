"""Subcommands of the ``sparsesel`` CLI, one module each (see :mod:`sparsesel.cli`)."""
