"""Slash-command groups. Modules not starting with `_` are loaded as extensions."""
