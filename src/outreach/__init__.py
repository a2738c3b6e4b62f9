"""outreach: newsletter and outreach mailing pipeline for a network of member cities."""

__version__ = "0.1.0"
