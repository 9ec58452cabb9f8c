"""Logging and metrics, each defined once."""
