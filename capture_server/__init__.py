"""capture-server: a mail daemon that turns email into CRM activity."""

__version__ = "0.1.0"
