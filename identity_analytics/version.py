"""The library's version, recorded in every store manifest and audit record."""

__version__ = "0.1.0"
