"""pgq-console: the terminal operations console for PgQueuer."""

__version__ = "0.1.0"
