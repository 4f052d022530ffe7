"""A synthetic body model with SMPL's layout, for tests, benchmarks and demos.

It has SMPL's real 24-joint tree and, by default, SMPL's exact array sizes (6890 vertices,
13776 faces, 10 betas, dense non-zero pose blend shapes), so that timings and memory match SMPL's
without the licensed file. The geometry is a stick figure of capsule-ish point clouds: good for
exercising every code path, not for looking at.
"""

import numpy as np

from smpl_jax import joints as joints_lib

# Rest joint positions (metres, SMPL frame, T-pose) loosely shaped like SMPL's.
_REST_JOINTS = np.array([
    [0.0, -0.22, 0.02], [0.06, -0.31, 0.01], [-0.06, -0.31, 0.01], [0.0, -0.11, -0.01],
    [0.10, -0.69, 0.01], [-0.10, -0.69, 0.01], [0.0, 0.03, 0.02], [0.09, -1.09, -0.03],
    [-0.09, -1.09, -0.03], [0.0, 0.08, 0.03], [0.11, -1.15, 0.09], [-0.11, -1.15, 0.09],
    [0.0, 0.29, -0.01], [0.08, 0.19, 0.0], [-0.08, 0.19, 0.0], [0.01, 0.37, 0.04],
    [0.17, 0.23, -0.02], [-0.17, 0.23, -0.02], [0.43, 0.21, -0.04], [-0.43, 0.21, -0.04],
    [0.68, 0.22, -0.04], [-0.68, 0.22, -0.04], [0.77, 0.21, -0.05], [-0.77, 0.21, -0.05],
])  # fmt: skip


def toy_smpl_arrays(
  num_vertices: int = 6890,
  num_faces: int = 13776,
  num_betas: int = 10,
  pose_blendshapes: bool = True,
  seed: int = 0,
) -> dict[str, np.ndarray]:
  """SMPL-layout arrays (keys as in SMPL files) for a synthetic body; deterministic in `seed`."""
  rng = np.random.default_rng(seed)
  parents = np.asarray(joints_lib.SMPL_PARENTS)
  joints = _REST_JOINTS
  # Sample points around each bone (parent -> child segment) and around the head/hands/feet.
  bone = rng.integers(1, 24, num_vertices)
  a, b = joints[parents[bone]], joints[bone]
  u = rng.random((num_vertices, 1))
  radius = 0.03 + 0.03 * rng.random((num_vertices, 1))
  direction = rng.normal(size=(num_vertices, 3))
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  v_template = a + u * (b - a) + radius * direction
  # Skinning: soft assignment to the 4 nearest joints, weights summing to one.
  dist = np.linalg.norm(v_template[:, None] - joints[None], axis=-1)
  near = np.argsort(dist, axis=1)[:, :4]
  w = np.exp(-np.take_along_axis(dist, near, 1) / 0.05)
  weights = np.zeros((num_vertices, 24))
  np.put_along_axis(weights, near, w / w.sum(1, keepdims=True), 1)
  # J_regressor: each joint is a convex combination of its 12 nearest vertices.
  J_regressor = np.zeros((24, num_vertices))
  for j in range(24):
    nn = np.argsort(dist[:, j])[:12]
    r = rng.random(12) + 0.5
    J_regressor[j, nn] = r / r.sum()
  # Shape: stature, girth and random smooth directions; betas ~ N(0, 1) give cm-scale changes.
  shapedirs = np.zeros((num_vertices, 3, num_betas))
  for s in range(num_betas):
    if s == 0:
      shapedirs[:, 1, s] = 0.05 * v_template[:, 1]
    elif s == 1:
      shapedirs[:, 0, s] = 0.05 * (v_template[:, 0] - a[:, 0])
      shapedirs[:, 2, s] = 0.05 * (v_template[:, 2] - a[:, 2])
    else:
      coeff = rng.normal(size=(3, 3)) * 0.02
      shapedirs[:, :, s] = np.tanh(v_template @ coeff)
  posedirs = (
    rng.normal(size=(num_vertices, 3, 207)) * 2e-3
    if pose_blendshapes
    else np.zeros((num_vertices, 3, 207))
  )
  faces = rng.integers(0, num_vertices, (num_faces, 3))
  kintree = np.stack([parents, np.arange(24)])
  kintree[0, 0] = 4294967295  # SMPL stores the root's parent as uint32 -1
  return dict(
    v_template=v_template,
    shapedirs=shapedirs,
    posedirs=posedirs,
    J_regressor=J_regressor,
    weights=weights,
    kintree_table=kintree.astype(np.int64),
    f=faces.astype(np.uint32),
  )


def toy_extra_regressors(num_vertices: int = 6890, seed: int = 1) -> dict[str, np.ndarray]:
  """Stand-ins for SPIN's J_regressor_extra (9, V) and J_regressor_h36m (17, V) on a toy mesh
  from `toy_smpl_arrays(num_vertices)`: each row a convex combination of 20 neighbouring
  vertices, local like the real regressors."""
  v = toy_smpl_arrays(num_vertices=num_vertices, seed=0)["v_template"]
  rng = np.random.default_rng(seed)
  out = {}
  for name, rows in (("J_regressor_extra", 9), ("J_regressor_h36m", 17)):
    reg = np.zeros((rows, num_vertices))
    for r in range(rows):
      centre = v[rng.integers(num_vertices)]
      support = np.argsort(np.linalg.norm(v - centre, axis=1))[:20]
      w = rng.random(20)
      reg[r, support] = w / w.sum()
    out[name] = reg
  return out
