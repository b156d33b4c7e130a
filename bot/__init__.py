"""Kontext: a Discord bot for AI image editing with FLUX.1 Kontext."""

__version__ = "0.1.0"
