"""spin_jax: the SPIN trainer (issue: regressor, fits dictionary, train step)."""
