"""mmscale.train."""
