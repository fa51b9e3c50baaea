"""Data sovereignty: the run-time guard in front of every sink, and the audit log."""
