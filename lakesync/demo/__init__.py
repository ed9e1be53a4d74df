"""Deterministic demo lakes for `lakesync demo` and `make demo`."""
