"""Billing: runs, claims and leases, the charge flow, the outcome policy, the scheduler."""
