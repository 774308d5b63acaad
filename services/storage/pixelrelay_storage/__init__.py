"""storage: writes task outputs to S3-compatible object storage and announces completion."""
