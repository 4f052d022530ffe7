"""fitting: batched SMPLify on smpl_jax (issue: batched SMPLify and the dataset fitter)."""
