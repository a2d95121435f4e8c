"""mmscale.eval."""
