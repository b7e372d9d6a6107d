"""hostwarden: compliance and abuse-response platform for hosting providers."""

__version__ = "0.1.0"
