"""The read API (HTTP JSON): a CRM syncs engagements, contacts and capture events from it."""
