"""Simulation layer: drives the kernel model through time (raw pauses now)."""
