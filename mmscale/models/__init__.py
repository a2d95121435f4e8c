"""mmscale.models."""
