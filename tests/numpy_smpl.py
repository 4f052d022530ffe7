"""An independent plain-numpy SMPL forward pass (float64), written from the SMPL paper / smplx.

It shares no code with smpl_jax: 4x4 homogeneous transforms, textbook Rodrigues, a dense
skinning sum. Tests compare smpl_jax against it.
"""

import numpy as np


def rodrigues(aa):
  theta = np.linalg.norm(aa)
  if theta == 0.0:
    return np.eye(3)
  k = aa / theta
  kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
  return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * kx @ kx


def forward(arrays, parents, betas, pose_aa, transl=None, keypoint_regressor=None):
  """SMPL with SMPL-file arrays. pose_aa (J, 3) includes the root. Returns verts, joints, kps."""
  transl = np.zeros(3) if transl is None else np.asarray(transl, np.float64)
  v_template = np.asarray(arrays["v_template"], np.float64)
  shapedirs = np.asarray(arrays["shapedirs"], np.float64)[..., : len(betas)]
  j_regressor = np.asarray(arrays["J_regressor"], np.float64)
  weights = np.asarray(arrays["weights"], np.float64)
  v_shaped = v_template + shapedirs @ np.asarray(betas, np.float64)
  rest = j_regressor @ v_shaped
  rots = [rodrigues(np.asarray(p, np.float64)) for p in pose_aa]
  posedirs = arrays.get("posedirs")
  v_posed = v_shaped
  if posedirs is not None and np.any(posedirs):
    feature = np.concatenate([(r - np.eye(3)).reshape(-1) for r in rots[1:]])
    v_posed = v_shaped + np.asarray(posedirs, np.float64) @ feature
  world = []
  for j, p in enumerate(parents):
    local = np.eye(4)
    local[:3, :3] = rots[j]
    local[:3, 3] = rest[j] - (rest[p] if p >= 0 else 0.0)
    world.append(local if p < 0 else world[p] @ local)
  joints = np.stack([w[:3, 3] for w in world])
  skin = []
  for j, w in enumerate(world):
    a = w.copy()
    a[:3, 3] -= w[:3, :3] @ rest[j]
    skin.append(a)
  skin = np.stack(skin)  # (J, 4, 4)
  per_vertex = np.einsum("vj,jab->vab", weights, skin)
  homog = np.concatenate([v_posed, np.ones((len(v_posed), 1))], 1)
  verts = np.einsum("vab,vb->va", per_vertex, homog)[:, :3] + transl
  joints = joints + transl
  kps = None if keypoint_regressor is None else keypoint_regressor @ verts
  return verts, joints, kps


def read_project_npz(path):
  """This project's .npz as SMPL-file arrays (dense), without smpl_jax."""
  d = dict(np.load(path))
  out = {}
  for key in list(d):
    if key.endswith("_rows"):
      prefix = key[:-5]
      mat = np.zeros(tuple(d[prefix + "_shape"]))
      mat[d[prefix + "_rows"], d[prefix + "_cols"]] = d[prefix + "_vals"]
      out[prefix] = mat
    elif not key.endswith(("_cols", "_vals", "_shape")):
      out[key] = d[key]
  return out
