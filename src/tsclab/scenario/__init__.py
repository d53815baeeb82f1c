"""Scenario layer: TOML scenario files, their validation, and the built-in library."""
