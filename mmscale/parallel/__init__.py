"""mmscale.parallel: meshes and logical-axis sharding rules."""
