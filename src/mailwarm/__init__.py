"""mailwarm: open, self-hosted, embeddable email warmup."""
