"""Array type for jaxtyping annotations: functions accept jax and numpy arrays alike.

Axis vocabulary (used across smpl_jax, fitting and spin_jax): B batch, V vertices, F faces,
J kinematic joints, K keypoints of a joint set, E model keypoints, S betas, P pose features,
G mixture components, H W C image.
"""

import jax
import numpy as np

Array = jax.Array | np.ndarray
