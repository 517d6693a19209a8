"""Replayable DDL (CREATE/GRANT, and REVOKE) from stored snapshots, per database family."""
