"""Wiring: the composition root (``bootstrap``), serving (``serving``, ``live_server``),
the library's entry points (``library``) and the CLI's commands (``commands``)."""
