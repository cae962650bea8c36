"""Sweeps: the experiment schema, grid expansion, the resumable runner and the SQLite results store."""
