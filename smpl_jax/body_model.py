"""The SMPL body model as a frozen pytree, and its forward pass for one body.

`forward` follows smplx's `lbs` exactly (SPIN_SPEC 1.3): shaped vertices from the template and
shape blend shapes; rest joints regressed from the *shaped, unposed* vertices; pose feature
(R - I) of every joint but the root; pose blend shapes; the kinematic chain; linear blend skinning.
Joints are the kinematic-chain joints, and the extra keypoints (face, feet, dataset joints) are
regressed from the *posed* vertices, as in smplx's vertex-joint selector and SPIN's
`J_regressor_extra`.

Two things are folded at load time, in float64, to make the pass cheap without changing its value:
`J_regressor @ v_template` and `J_regressor @ shapedirs` (rest joints are linear in betas), and,
for `forward_joints`, the keypoint regressors through the skinning weights (see `_fold_keypoints`).

One body per call; batch with `jax.vmap` (`forward_batch`, `forward_joints_batch`).
Units: metres. Axes: SMPL's (y up, body facing +z, left of the body = +x).
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from smpl_jax import rotations
from smpl_jax.typing import Array

_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class JointSet:
  """A named list of 3D points taken from the model's kinematic joints and keypoints.

  `sources[i]` indexes the concatenation `[joints (J), keypoints (E)]`, or is -1 where this model
  cannot define the point (its value is then 0 and `defined[i]` is False; give such joints zero
  weight in any loss). `flip_perm[i]` is the index of the mirror image of point i.
  """

  name: str
  names: tuple[str, ...]
  sources: tuple[int, ...]
  flip_perm: tuple[int, ...]

  @property
  def defined(self) -> tuple[bool, ...]:
    return tuple(s >= 0 for s in self.sources)

  def __len__(self) -> int:
    return len(self.names)


def _static(**kwargs):
  return dataclasses.field(metadata=dict(static=True), **kwargs)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class BodyModel:
  """SMPL-layout body model: arrays are pytree leaves, the tree and names are static.

  Shapes: V vertices, F faces, J kinematic joints, S shape components, P = 9 (J - 1) pose
  blend-shape features (P = 0 when the model has none, which skips that product), E keypoints,
  NNZ the keypoint regressor's non-zeros, N the largest number of joints skinning a keypoint.
  """

  v_template: Float[Array, "V 3"]
  # Pose and shape blend shapes stacked as rows, pose first: (P + S, V * 3). One GEMM applies
  # both, and the first P + S' rows serve S' <= S betas without a copy (see the shapedirs /
  # posedirs properties for SMPL's layouts).
  blend_dirs: Float[Array, "PS V3"]
  J_regressor: Float[Array, "J V"]
  weights: Float[Array, "V J"]
  faces: Int[Array, "F 3"]
  # Folded in float64 at load: rest joints = joint_template + joint_shapedirs @ betas.
  joint_template: Float[Array, "J 3"]
  joint_shapedirs: Float[Array, "J 3 S"]
  keypoint_rowsum: Float[Array, " E"]  # regressor row sums: how much of transl a keypoint gets
  # Keypoint regressor (E, V) in sparse COO form, sorted by row: keypoints[e] = sum over the
  # entries n with keypoint_rows[n] == e of keypoint_vals[n] * vertices[keypoint_cols[n]].
  keypoint_rows: Int[Array, " NNZ"]
  keypoint_cols: Int[Array, " NNZ"]
  keypoint_vals: Float[Array, " NNZ"]
  # The same regressor folded through skinning (see _fold_keypoints), for forward_joints.
  keypoint_joint_ids: Int[Array, "E N"]
  keypoint_skin: Float[Array, "E N"]
  keypoint_template: Float[Array, "E N 3"]
  keypoint_shapedirs: Float[Array, "E N 3 S"]
  keypoint_posedirs: Float[Array, "E N 3 P"]
  parents: tuple[int, ...] = _static()
  num_pose_features: int = _static()  # P: 9 (J - 1), or 0 without pose blend shapes
  joint_names: tuple[str, ...] = _static()
  keypoint_names: tuple[str, ...] = _static()
  joint_sets: tuple[JointSet, ...] = _static(default=())
  name: str = _static(default="")

  @property
  def num_vertices(self) -> int:
    return self.v_template.shape[0]

  @property
  def num_joints(self) -> int:
    return len(self.parents)

  @property
  def num_betas(self) -> int:
    return self.blend_dirs.shape[0] - self.num_pose_features

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  @property
  def has_pose_blendshapes(self) -> bool:
    return self.num_pose_features > 0

  @property
  def shapedirs(self) -> Float[Array, "V 3 S"]:
    """Shape blend shapes in SMPL's file layout (V, 3, S)."""
    return self.blend_dirs[self.num_pose_features :].T.reshape(self.num_vertices, 3, -1)

  @property
  def posedirs(self) -> Float[Array, "P V3"]:
    """Pose blend shapes in smplx's buffer layout (P, V * 3); P = 0 when the model has none."""
    return self.blend_dirs[: self.num_pose_features]

  def joint_set(self, name: str) -> JointSet:
    for js in self.joint_sets:
      if js.name == name:
        return js
    raise KeyError(
      f"Body model {self.name!r} has no joint set {name!r}; it has "
      f"{[js.name for js in self.joint_sets]}. For SMPL files, the 'h36m17' set needs SPIN's "
      "J_regressor_h36m.npy (pass joint_regressor_h36m= to load_model, or put the file next to "
      "the model file)."
    )


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class BodyOutput:
  """Result of a forward pass for one body (leading batch axes are added by vmap).

  `vertices` is None from `forward_joints`. `joint_sets` maps each of the model's joint set names
  to its points (undefined points are 0; see `JointSet.defined`). Everything is in metres, with
  `transl` already added.
  """

  vertices: Float[Array, "*B V 3"] | None
  joints: Float[Array, "*B J 3"]
  keypoints: Float[Array, "*B E 3"]
  joint_sets: dict[str, Float[Array, "*B _ 3"]]
  rotmats: Float[Array, "*B J 3 3"]  # the local (parent-relative) joint rotations used


# ------------------------------------------------------------------------------------ inputs


def _as_rotmats(x, name: str, count: int, dtype):
  """Axis-angle (count*3,), (count, 3) or rotation matrices (count, 3, 3) -> (count, 3, 3)."""
  x = jnp.asarray(x, dtype)
  if x.shape in ((count * 3,), (count, 3)):
    return rotations.aa_to_rotmat(x.reshape(count, 3))
  if x.shape == (count, 3, 3):
    return x
  raise ValueError(
    f"{name} has shape {x.shape}; expected axis-angle ({count * 3},) or ({count}, 3), or "
    f"rotation matrices ({count}, 3, 3) for one body (use jax.vmap or forward_batch for a batch)."
  )


def _inputs(model: BodyModel, betas, global_orient, body_pose, transl):
  dtype = model.v_template.dtype
  nj = model.num_joints
  if betas is None:
    betas = jnp.zeros((0,), dtype)
  betas = jnp.asarray(betas, dtype)
  if betas.ndim != 1:
    raise ValueError(
      f"betas has shape {betas.shape}; expected (num_betas,) for one body, with num_betas <= "
      f"{model.num_betas} (use jax.vmap or forward_batch for a batch)."
    )
  if betas.shape[0] > model.num_betas:
    raise ValueError(
      f"betas has {betas.shape[0]} entries but body model {model.name!r} has "
      f"{model.num_betas} shape components; pass at most {model.num_betas} betas."
    )
  root = (
    jnp.eye(3, dtype=dtype)[None]
    if global_orient is None
    else _as_rotmats(global_orient, "global_orient", 1, dtype)
  )
  if body_pose is None:
    body = jnp.broadcast_to(jnp.eye(3, dtype=dtype), (nj - 1, 3, 3))
  else:
    body = _as_rotmats(body_pose, "body_pose", nj - 1, dtype)
  rotmats = jnp.concatenate([root, body], axis=0)
  if transl is None:
    transl = jnp.zeros((3,), dtype)
  transl = jnp.asarray(transl, dtype)
  if transl.shape != (3,):
    raise ValueError(f"transl has shape {transl.shape}; expected (3,) for one body.")
  return betas, rotmats, transl


# ---------------------------------------------------------------------------------- kinematics


def rest_joints(model: BodyModel, betas: Float[Array, " S"]) -> Float[Array, "J 3"]:
  """J = J_regressor @ (v_template + shapedirs @ betas), through the folded arrays."""
  nb = betas.shape[0]
  return model.joint_template + jnp.einsum(
    "jcs,s->jc", model.joint_shapedirs[..., :nb], betas, precision=_HIGHEST
  )


def kinematic_chain(
  parents: tuple[int, ...],
  rotmats: Float[Array, "J 3 3"],
  joints: Float[Array, "J 3"],
) -> tuple[Float[Array, "J 3 3"], Float[Array, "J 3"]]:
  """World rotations G_j = G_parent R_j and posed joint positions, smplx's batch_rigid_transform.

  The loop runs over the static parent tuple and unrolls at trace time.
  """
  g = [rotmats[0]]
  t = [joints[0]]
  for j in range(1, len(parents)):
    p = parents[j]
    g.append(jnp.matmul(g[p], rotmats[j], precision=_HIGHEST))
    t.append(t[p] + jnp.matmul(g[p], joints[j] - joints[p], precision=_HIGHEST))
  return jnp.stack(g), jnp.stack(t)


def _pose_feature(rotmats: Float[Array, "J 3 3"]) -> Float[Array, " P"]:
  """(R_j - I) for the non-root joints, row-major flattened: smplx's pose_feature."""
  return (rotmats[1:] - jnp.eye(3, dtype=rotmats.dtype)).reshape(-1)


def _select_joint_sets(model: BodyModel, joints, keypoints) -> dict[str, Array]:
  points = jnp.concatenate([joints, keypoints], axis=-2)
  out = {}
  for js in model.joint_sets:
    idx = np.maximum(np.asarray(js.sources, np.int32), 0)
    mask = np.asarray(js.defined, bool)[:, None]
    out[js.name] = jnp.where(mask, points[idx], 0.0)
  return out


def _folded_keypoints(model: BodyModel, betas, rotmats, g, j_rest, j_posed) -> Float[Array, "E 3"]:
  """Keypoints of the posed mesh from the load-time fold (see `forward_joints`)."""
  nb = betas.shape[0]
  q = model.keypoint_template + jnp.einsum(
    "encs,s->enc", model.keypoint_shapedirs[..., :nb], betas, precision=_HIGHEST
  )
  if model.has_pose_blendshapes:
    q = q + jnp.einsum(
      "encp,p->enc", model.keypoint_posedirs, _pose_feature(rotmats), precision=_HIGHEST
    )
  ids = model.keypoint_joint_ids
  g_k, t_k, j_k = g[ids], j_posed[ids], j_rest[ids]  # (E, N, ...)
  s = model.keypoint_skin[..., None]
  return jnp.sum(
    jnp.einsum("enab,enb->ena", g_k, q - s * j_k, precision=_HIGHEST) + s * t_k, axis=1
  )


def regress_keypoints(model: BodyModel, vertices: Float[Array, "V 3"]) -> Float[Array, "E 3"]:
  """The model's keypoint regressor applied to any mesh of its topology (e.g. a ground-truth
  mesh in evaluation, as SPIN regresses H36M joints from ground-truth SMPL vertices)."""
  return jax.ops.segment_sum(
    model.keypoint_vals[:, None] * vertices[model.keypoint_cols],
    model.keypoint_rows,
    num_segments=model.num_keypoints,
    indices_are_sorted=True,
  )


# ------------------------------------------------------------------------------------ forward


def _output(model, verts, joints, keypoints, rotmats, transl) -> BodyOutput:
  """Adds the translation (keypoints get it weighted by their regressor row sums) and selects
  the joint sets."""
  joints = joints + transl
  keypoints = keypoints + model.keypoint_rowsum[:, None] * transl
  return BodyOutput(
    vertices=None if verts is None else verts + transl,
    joints=joints,
    keypoints=keypoints,
    joint_sets=_select_joint_sets(model, joints, keypoints),
    rotmats=rotmats,
  )


def forward(
  model: BodyModel,
  betas: Float[Array, "..."] | None = None,  # shapes are checked by _inputs, with clear errors
  global_orient: Float[Array, "..."] | None = None,
  body_pose: Float[Array, "..."] | None = None,
  transl: Float[Array, "..."] | None = None,
) -> BodyOutput:
  """Full SMPL forward for one body: vertices, kinematic joints, keypoints and joint sets.

  Args:
    model: the body model.
    betas: (S',) shape coefficients, S' <= model.num_betas (the first S' components are used).
    global_orient: root rotation, axis-angle (3,) / (1, 3) or a rotation matrix (1, 3, 3) (not
      (3, 3), which would be ambiguous with three axis-angle vectors).
    body_pose: the other J - 1 joints, axis-angle (69,) / (23, 3) or matrices (23, 3, 3) for SMPL.
    transl: (3,) translation in metres added to every output point.
  Missing arguments mean zero shape, zero rotation, zero translation.
  """
  betas, rotmats, transl = _inputs(model, betas, global_orient, body_pose, transl)
  nb = betas.shape[0]
  j_rest = rest_joints(model, betas)
  # Shape and pose blend shapes in one product: [pose_feature, betas] @ blend_dirs[:P + S'].
  coeffs = jnp.concatenate([_pose_feature(rotmats)[: model.num_pose_features], betas])
  offsets = jnp.matmul(
    coeffs, model.blend_dirs[: model.num_pose_features + nb], precision=_HIGHEST
  )
  v_posed = model.v_template + offsets.reshape(-1, 3)
  g, j_posed = kinematic_chain(model.parents, rotmats, j_rest)
  # Skinning transforms A_j = [G_j | t_j - G_j J_j], blended as one (12, J) @ (J, V) product
  # into coordinate-major rows, so that applying them is 3 multiply-adds over contiguous rows.
  # On XLA:CPU this layout measured about 1.8x faster at batch 64 than a vertex-major one, which
  # was itself about 5x faster than smplx's einsum over (V, 3, 4).
  t_rel = j_posed - jnp.einsum("jab,jb->ja", g, j_rest, precision=_HIGHEST)
  a = jnp.concatenate([jnp.swapaxes(g, -1, -2), t_rel[:, None, :]], axis=1)  # (J, 4, 3)
  blend = jnp.einsum("jk,vj->kv", a.reshape(-1, 12), model.weights, precision=_HIGHEST)
  blend = blend.reshape(4, 3, -1)  # blend[c, :, v] multiplies coordinate c of vertex v
  vt = v_posed.T
  verts = (blend[0] * vt[0] + blend[1] * vt[1] + blend[2] * vt[2] + blend[3]).T
  # Keypoints regressed from the posed mesh, through the load-time fold: the same values as
  # regress_keypoints(model, verts) to float32 rounding, at a fraction of the cost.
  keypoints = _folded_keypoints(model, betas, rotmats, g, j_rest, j_posed)
  return _output(model, verts, j_posed, keypoints, rotmats, transl)


def forward_joints(
  model: BodyModel,
  betas: Float[Array, "..."] | None = None,  # shapes are checked by _inputs, with clear errors
  global_orient: Float[Array, "..."] | None = None,
  body_pose: Float[Array, "..."] | None = None,
  transl: Float[Array, "..."] | None = None,
) -> BodyOutput:
  """Joints and keypoints without the mesh: equal to `forward` up to float32 rounding.

  Keypoint e of the posed mesh is sum_i r_ei sum_j w_ij (A_j [v_posed_i; 1]); regrouped by joint
  it is sum_j A_j [q_ej; s_ej] with s_ej = sum_i r_ei w_ij and q_ej = sum_i r_ei w_ij v_posed_i,
  which is affine in betas and the pose feature. Those coefficients are folded at load time, so
  a keypoint costs N (<= 24) transforms instead of a pass over all V vertices.
  """
  betas, rotmats, transl = _inputs(model, betas, global_orient, body_pose, transl)
  j_rest = rest_joints(model, betas)
  g, j_posed = kinematic_chain(model.parents, rotmats, j_rest)
  keypoints = _folded_keypoints(model, betas, rotmats, g, j_rest, j_posed)
  return _output(model, None, j_posed, keypoints, rotmats, transl)


def _require_one(*params):
  if all(p is None for p in params):
    raise ValueError(
      "forward_batch needs at least one batched parameter (betas, global_orient, "
      "body_pose or transl) to know the batch size."
    )


def forward_batch(
  model: BodyModel, betas=None, global_orient=None, body_pose=None, transl=None
) -> BodyOutput:
  """`forward` over a leading batch axis of every given parameter (omitted ones are zero)."""
  _require_one(betas, global_orient, body_pose, transl)
  return jax.vmap(forward, in_axes=(None, 0, 0, 0, 0))(
    model, betas, global_orient, body_pose, transl
  )


def forward_joints_batch(
  model: BodyModel, betas=None, global_orient=None, body_pose=None, transl=None
) -> BodyOutput:
  """`forward_joints` over a leading batch axis of every given parameter."""
  _require_one(betas, global_orient, body_pose, transl)
  return jax.vmap(forward_joints, in_axes=(None, 0, 0, 0, 0))(
    model, betas, global_orient, body_pose, transl
  )


# ---------------------------------------------------------------------------- construction


def _fold_keypoints(
  regressor: np.ndarray,
  weights: np.ndarray,
  v_template: np.ndarray,
  shapedirs: np.ndarray,
  posedirs_vcp: np.ndarray,
):
  """Folds a keypoint regressor (E, V) through the skinning weights, in float64.

  Returns joint ids (E, N), s (E, N), q template (E, N, 3), q shape dirs (E, N, 3, S) and q pose
  dirs (E, N, 3, P) such that q_ej = template + shapedirs @ betas + posedirs @ pose_feature.
  Joints a keypoint does not depend on are padded with s = q = 0.
  """
  e_count = regressor.shape[0]
  s_full = regressor @ weights  # (E, J)
  influence = [np.flatnonzero(regressor[e] != 0) for e in range(e_count)]
  joint_lists = [
    np.flatnonzero(np.abs(weights[vs]).sum(0) > 0) if len(vs) else np.zeros(0, np.int64)
    for vs in influence
  ]
  n = max([1] + [len(j) for j in joint_lists])
  num_s, num_p = shapedirs.shape[-1], posedirs_vcp.shape[-1]
  ids = np.zeros((e_count, n), np.int32)
  skin = np.zeros((e_count, n))
  q0 = np.zeros((e_count, n, 3))
  qs = np.zeros((e_count, n, 3, num_s))
  qp = np.zeros((e_count, n, 3, num_p))
  for e, (vs, js) in enumerate(zip(influence, joint_lists)):
    r = regressor[e, vs]
    for k, j in enumerate(js):
      rw = r * weights[vs, j]  # (support,)
      ids[e, k] = j
      skin[e, k] = s_full[e, j]
      q0[e, k] = rw @ v_template[vs]
      qs[e, k] = np.einsum("v,vcs->cs", rw, shapedirs[vs])
      if num_p:
        qp[e, k] = np.einsum("v,vcp->cp", rw, posedirs_vcp[vs])
  return ids, skin, q0, qs, qp


def build_model(
  *,
  v_template: np.ndarray,
  shapedirs: np.ndarray,
  posedirs: np.ndarray | None,
  J_regressor: np.ndarray,
  weights: np.ndarray,
  faces: np.ndarray,
  parents: tuple[int, ...] | np.ndarray,
  joint_names: tuple[str, ...] | None = None,
  keypoint_regressor: np.ndarray | None = None,
  keypoint_names: tuple[str, ...] = (),
  joint_sets: tuple[JointSet, ...] = (),
  name: str = "",
  dtype: Any = jnp.float32,
) -> BodyModel:
  """Validates SMPL-layout numpy arrays, folds the derived arrays in float64, returns a model.

  Array layouts are SMPL's file layouts: shapedirs (V, 3, S), posedirs (V, 3, P) with
  P = 9 (J - 1) (or None / all zeros for no pose blend shapes), J_regressor (J, V), weights
  (V, J), faces (F, 3), parents (J,) with -1 for the root, keypoint_regressor (E, V) applied to
  posed vertices. Errors name the array and the expected shape.
  """
  f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
  v_template, shapedirs, J_regressor, weights = map(
    f64, (v_template, shapedirs, J_regressor, weights)
  )
  parents = tuple(int(p) for p in np.asarray(parents).reshape(-1))
  nv, nj = v_template.shape[0] if v_template.ndim == 2 else -1, len(parents)

  def check(arr, expected, what):
    if arr.shape != expected:
      raise ValueError(
        f"{name or 'body model'}: {what} has shape {arr.shape}, expected {expected}. "
        "The file is not a valid SMPL-layout model (or is corrupt)."
      )

  if v_template.ndim != 2 or v_template.shape[1] != 3:
    raise ValueError(
      f"{name or 'body model'}: v_template has shape {v_template.shape}, expected (V, 3)."
    )
  if shapedirs.ndim != 3:
    raise ValueError(
      f"{name or 'body model'}: shapedirs has shape {shapedirs.shape}, expected (V, 3, num_betas)."
    )
  check(shapedirs, (nv, 3, shapedirs.shape[2]), "shapedirs")
  check(J_regressor, (nj, nv), "J_regressor")
  check(weights, (nv, nj), "weights")
  faces = np.asarray(faces)
  if faces.ndim != 2 or faces.shape[1] != 3:
    raise ValueError(f"{name or 'body model'}: faces has shape {faces.shape}, expected (F, 3).")
  if faces.size and (faces.min() < 0 or faces.max() >= nv):
    raise ValueError(f"{name or 'body model'}: faces index vertices outside [0, {nv}).")
  if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j):
    raise ValueError(
      f"{name or 'body model'}: kinematic parents {parents} are not a tree in topological "
      "order (root first with parent -1, every parent before its child)."
    )
  num_p = 9 * (nj - 1)
  if posedirs is None or not np.any(posedirs):
    posedirs = np.zeros((nv, 3, 0))
  else:
    posedirs = f64(posedirs)
    check(posedirs, (nv, 3, num_p), "posedirs")
  for arr, what in (
    (v_template, "v_template"),
    (shapedirs, "shapedirs"),
    (posedirs, "posedirs"),
    (J_regressor, "J_regressor"),
    (weights, "weights"),
  ):
    if not np.all(np.isfinite(arr)):
      raise ValueError(
        f"{name or 'body model'}: {what} contains NaN or infinite values; the file is corrupt."
      )
  if keypoint_regressor is None:
    keypoint_regressor = np.zeros((0, nv))
  keypoint_regressor = f64(keypoint_regressor)
  check(keypoint_regressor, (len(keypoint_names), nv), "keypoint_regressor")
  if joint_names is None:
    joint_names = tuple(f"joint_{j}" for j in range(nj))
  for js in joint_sets:
    n_src = nj + len(keypoint_names)
    if (
      not (len(js.names) == len(js.sources) == len(js.flip_perm))
      or any(s >= n_src for s in js.sources)
      or sorted(js.flip_perm) != list(range(len(js.names)))
    ):
      raise ValueError(f"joint set {js.name!r} is malformed (sources/flip_perm).")

  ids, skin, q0, qs, qp = _fold_keypoints(
    keypoint_regressor, weights, v_template, shapedirs, posedirs
  )
  kp_rows, kp_cols = np.nonzero(keypoint_regressor)  # row-major order: sorted by row
  cast = lambda x: jnp.asarray(np.asarray(x), dtype)  # noqa: E731
  return BodyModel(
    v_template=cast(v_template),
    blend_dirs=cast(
      np.concatenate([posedirs.reshape(nv * 3, -1).T, shapedirs.reshape(nv * 3, -1).T])
    ),
    J_regressor=cast(J_regressor),
    weights=cast(weights),
    faces=jnp.asarray(faces, jnp.int32),
    joint_template=cast(J_regressor @ v_template),
    joint_shapedirs=cast(np.einsum("jv,vcs->jcs", J_regressor, shapedirs)),
    keypoint_rowsum=cast(keypoint_regressor.sum(axis=1)),
    keypoint_rows=jnp.asarray(kp_rows, jnp.int32),
    keypoint_cols=jnp.asarray(kp_cols, jnp.int32),
    keypoint_vals=cast(keypoint_regressor[kp_rows, kp_cols]),
    keypoint_joint_ids=jnp.asarray(ids),
    keypoint_skin=cast(skin),
    keypoint_template=cast(q0),
    keypoint_shapedirs=cast(qs),
    keypoint_posedirs=cast(qp),
    parents=parents,
    num_pose_features=posedirs.shape[-1],
    joint_names=tuple(joint_names),
    keypoint_names=tuple(keypoint_names),
    joint_sets=tuple(joint_sets),
    name=name,
  )
