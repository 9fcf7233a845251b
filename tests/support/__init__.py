"""Shared helpers for the test suite: real stores, in-process services, polling."""
