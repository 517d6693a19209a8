"""Approved baselines of effective access, and drift findings when access leaves them."""
