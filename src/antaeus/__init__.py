"""Antaeus: a recurring billing engine that charges every due invoice exactly once."""

__version__ = "0.1.0"
