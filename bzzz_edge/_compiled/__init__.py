"""Compiled (Cython) hot paths, built from ../_native/ at install time when possible."""
