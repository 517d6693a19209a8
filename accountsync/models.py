"""Accounts, permission snapshots and change logs (see DESIGN.md §2)."""
