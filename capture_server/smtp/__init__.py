"""SMTP and LMTP front end (aiosmtpd)."""
