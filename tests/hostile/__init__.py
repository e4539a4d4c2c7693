"""Hostile input against real gateway processes: regressions and generated properties."""
