"""Coverslip: a fast, self-contained web server for microscopy images."""

__version__ = "0.1.0"
