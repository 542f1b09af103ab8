"""Shared definitions, standard library only (any env): prompts, defaults, atomic io, cli, stats, steps."""
