"""spin_jax: the SPIN trainer (regressor, fits dictionary, train step).

Not built yet: the trainer arrives with its own issue. The package exists so that the layout
and the dependency direction (smpl_jax <- fitting <- spin_jax <- experiments) are fixed now.
"""
