"""Persistence: engine and sessions, tables, repositories (all SQL lives here), migrations."""
