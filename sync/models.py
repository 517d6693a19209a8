"""Sync sessions and per-instance records (see DESIGN.md §2)."""
