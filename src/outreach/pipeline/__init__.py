"""The pipeline, one module per stage in flow order; no adapters, no settings."""
