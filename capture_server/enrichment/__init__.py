"""Enrichment helpers that read message text (pure: no I/O)."""
