"""attnkit.train."""
