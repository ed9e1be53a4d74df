"""Governance, on the data the sync wrote: erasure, treating personal data stored earlier, tracing
a row to its source, and replaying what was quarantined."""
