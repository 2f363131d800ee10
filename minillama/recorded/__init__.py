"""Data recorded from real runs, read by the chapters with ``importlib.resources`` (package data)."""
