"""Pure data and rules of outreach: no I/O here."""
