"""attnkit.models."""
