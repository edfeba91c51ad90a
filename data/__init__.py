"""Data sets shipped with lmmformula (see README.md in this folder)."""
