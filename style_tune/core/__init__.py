"""Shared definitions, standard library only (any env): prompts, step helpers, atomic writes."""
