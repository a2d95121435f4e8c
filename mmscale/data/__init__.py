"""mmscale.data."""
