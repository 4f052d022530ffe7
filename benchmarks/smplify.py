"""SMPLify throughput and quality: the JAX fitter (Adam, Levenberg-Marquardt) against SPIN's
PyTorch SMPLify, in one run, on the same model file and inputs.

    python benchmarks/smplify.py [--batches 1 64 1024] [--skip-torch-at 1024]

Model: a synthetic file with SMPL's exact sizes (6890 vertices, dense pose blend shapes) plus
stand-ins for SPIN's J_regressor_extra, so both sides compute all 49 SPIN joints (PyTorch from
the full mesh, as SPIN's wrapper does; JAX from its joints-only path). Prior: the open GMM prior
(the same arrays on both sides). Data: synthetic bodies projected with SPIN's camera, OpenPose
rows noisy (2 px) with dropout; each fit starts near the truth (0.1 rad pose noise, +10 % depth),
as SPIN's in-the-loop fits start from the network's prediction.

The PyTorch side is a line-by-line port of SPIN's smplify.py / losses.py / prior.py (Adam lr 1e-2,
camera stage then body stage, GMoF sigma 100, max-mixture prior, weights 4.78 / 15.2 / 5, torso
camera loss with the 100^2 depth term) on smplx, with torch set to all cores.

Printed per configuration: seconds per batch, fits/s, the ratio to SPIN's fits/s at that batch,
the mean final fitting loss (SPIN's get_fitting_loss, px^2) and the mean PA-MPJPE of the fitted
24 joints against the truth (mm).
"""

import argparse
import dataclasses
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import smpl_jax
from fitting import priors, smplify, synthetic
from fitting.metrics import pa_mpjpe
from smpl_jax import joints as joints_lib
from smpl_jax import toy

try:
  import smplx
  import torch
except ImportError:
  smplx = torch = None


# ------------------------------------------------------------------------ SPIN's SMPLify, torch

if torch is not None:
  # SPIN's JOINT_MAP: indices into smplx's 45 joints + J_regressor_extra's 9, from the library's
  # table (tests/test_joints.py checks it against SPIN's literal one).
  _NAMES54 = (
    [f"joint:{n}" for n in joints_lib.SMPL_JOINT_NAMES]
    + [f"keypoint:{n}" for n, _ in joints_lib.SMPL_VERTEX_KEYPOINTS]
    + [f"keypoint:{n}" for n in joints_lib.SPIN_EXTRA_REGRESSOR_NAMES]
  )
  JOINT_MAP = [_NAMES54.index(src) for src in joints_lib.SPIN49_SMPL_SOURCES]

  class SpinSmplify:
    """SPIN's SMPLify (smplify/smplify.py) on smplx, for timing and quality comparison."""

    def __init__(self, model_path, extra_regressor, gmm, num_iters=100, focal=5000.0):
      self.smpl = smplx.SMPL(model_path=str(model_path), create_transl=False)
      self.extra = torch.as_tensor(extra_regressor, dtype=torch.float32)
      self.num_iters, self.focal = num_iters, focal
      means, covars, weights = (np.asarray(x, np.float64) for x in gmm)
      prec = np.linalg.inv(covars)
      sqrdets = np.sqrt(np.exp(np.linalg.slogdet(covars)[1] - np.linalg.slogdet(covars)[1].min()))
      nll_w = weights / ((2 * np.pi) ** (69 / 2.0) * sqrdets)
      self.means = torch.as_tensor(means, dtype=torch.float32)
      self.prec = torch.as_tensor(prec, dtype=torch.float32)
      self.neg_log_w = torch.as_tensor(-np.log(nll_w), dtype=torch.float32)

    def joints49(self, global_orient, body_pose, betas):
      out = self.smpl(global_orient=global_orient, body_pose=body_pose, betas=betas)
      extra = torch.einsum("bik,ji->bjk", out.vertices, self.extra)
      return torch.cat([out.joints, extra], 1)[:, JOINT_MAP]

    def project(self, joints, cam_t):
      p = joints + cam_t[:, None]
      return self.focal * p[..., :2] / p[..., 2:] + 112.0

    @staticmethod
    def gmof(x, sigma=100.0):
      return sigma**2 * x**2 / (sigma**2 + x**2)

    def pose_prior(self, body_pose):
      diff = body_pose[:, None] - self.means
      quad = torch.einsum("bgi,gij,bgj->bg", diff, self.prec, diff)
      return (0.5 * quad + self.neg_log_w).min(dim=1).values

    @staticmethod
    def angle_prior(pose72):
      idx = torch.tensor([55, 58, 12, 15]) - 3
      signs = torch.tensor([1.0, -1.0, -1.0, -1.0])
      return torch.exp(pose72[:, 3:][:, idx] * signs) ** 2

    def body_loss(self, go, body_pose, betas, cam_t, kp, conf, reduce=True):
      proj = self.project(self.joints49(go, body_pose, betas), cam_t)
      reproj = conf**2 * self.gmof(proj - kp).sum(-1)
      if not reduce:
        return reproj
      full = torch.cat([go, body_pose], 1)
      total = (
        reproj.sum(-1)
        + 4.78**2 * self.pose_prior(body_pose)
        + 15.2**2 * self.angle_prior(full).sum(-1)
        + 5.0**2 * (betas**2).sum(-1)
      )
      return total.sum()

    def __call__(self, init: smplify.FitParams, keypoints):
      kp = torch.as_tensor(np.asarray(keypoints)[..., :2])
      conf = torch.as_tensor(np.asarray(keypoints)[..., 2]).clone()
      t = lambda x: torch.as_tensor(np.asarray(x)).clone()  # noqa: E731
      go, body_pose, betas, cam_t = (
        t(init.global_orient),
        t(init.body_pose),
        t(init.betas),
        t(init.cam_t),
      )
      tz0 = cam_t[:, 2].clone()
      # Camera stage: torso joints, OpenPose if all four detected else ground truth.
      op, gt = [9, 12, 2, 5], [27, 28, 33, 34]
      use_op = (conf[:, op] > 0).all(-1)
      go.requires_grad_(True)
      cam_t.requires_grad_(True)
      opt = torch.optim.Adam([go, cam_t], lr=1e-2, betas=(0.9, 0.999))
      for _ in range(self.num_iters):
        proj = self.project(self.joints49(go, body_pose, betas), cam_t)
        d_op = ((proj[:, op] - kp[:, op]) ** 2).sum((1, 2))
        d_gt = ((proj[:, gt] - kp[:, gt]) ** 2).sum((1, 2))
        loss = (torch.where(use_op, d_op, d_gt) + 100.0**2 * (cam_t[:, 2] - tz0) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
      cam_t = cam_t.detach()
      conf[:, [1, 9, 12, 27, 28]] = 0.0  # ignored joints
      body_pose.requires_grad_(True)
      betas.requires_grad_(True)
      opt = torch.optim.Adam([body_pose, betas, go], lr=1e-2, betas=(0.9, 0.999))
      for _ in range(self.num_iters):
        loss = self.body_loss(go, body_pose, betas, cam_t, kp, conf)
        opt.zero_grad()
        loss.backward()
        opt.step()
      with torch.no_grad():
        reproj = self.body_loss(go, body_pose, betas, cam_t, kp, conf, reduce=False)
      return dict(
        global_orient=go.detach().numpy(),
        body_pose=body_pose.detach().numpy(),
        betas=betas.detach().numpy(),
        loss=reproj.mean(-1).numpy(),
      )


# ------------------------------------------------------------------------------------- helpers


def near_start(gt: smplify.FitParams, seed: int) -> smplify.FitParams:
  rng = np.random.default_rng(seed)
  noisy = lambda x, s: np.asarray(x + rng.normal(scale=s, size=x.shape), np.float32)  # noqa
  return smplify.FitParams(
    global_orient=noisy(gt.global_orient, 0.1),
    body_pose=noisy(gt.body_pose, 0.1),
    betas=noisy(gt.betas, 0.5),
    cam_t=np.asarray(gt.cam_t * [1, 1, 1.1], np.float32),
  )


def parse_config(config: str):
  """'solver:iterations[:learning rate]' -> (SmplifyOptions, label)."""
  parts = config.split(":")
  solver, iters = parts[0], int(parts[1])
  options = smplify.SmplifyOptions(solver=solver, num_iters=iters)
  label = f"jax {solver} {iters}+{iters}"
  if len(parts) > 2:
    options = dataclasses.replace(options, step_size=float(parts[2]))
    label += f" lr {parts[2]}"
  return options, label


def pa_mpjpe_mm(pred, truth) -> float:
  """Mean PA-MPJPE over the batch, mm."""
  return 1000 * float(jnp.mean(pa_mpjpe(pred, truth)))


def timed(fn, repeats):
  out = fn()  # compile / warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t)
  return out, float(np.median(times))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
  ap.add_argument(
    "--torch-max-batch",
    type=int,
    default=64,
    help="largest batch to run SPIN's PyTorch SMPLify on (it is slow)",
  )
  ap.add_argument(
    "--configs",
    nargs="+",
    default=[
      "adam:100",
      "adam:50",
      "adam:50:0.03",
      "adam:25",
      "adam:25:0.05",
      "lm:20",
      "lm:10",
      "lm:5",
    ],
    help="solver:iterations per stage[:Adam learning rate]",
  )
  ap.add_argument(
    "--standalone-batch",
    type=int,
    default=64,
    help="batch for the standalone-start comparison (0 to skip)",
  )
  args = ap.parse_args(argv)
  if torch is not None:
    torch.set_num_threads(os.cpu_count())
  print(
    f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.device_count()} device)"
    + (f"; torch {torch.__version__}, {torch.get_num_threads()} threads" if torch else "")
  )
  with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "smpl" / "SMPL_NEUTRAL.pkl"
    path.parent.mkdir()
    arrays = toy.toy_smpl_arrays(seed=0)
    with open(path, "wb") as fh:
      pickle.dump(arrays, fh, protocol=2)
    extra = toy.toy_extra_regressors()
    np.save(path.parent / "J_regressor_extra.npy", extra["J_regressor_extra"])
    body = smpl_jax.load_model(path)
    prior = priors.load_gmm()
    with np.load(priors.Path(priors.__file__).parent / "data" / priors.DEFAULT_PRIOR_FILE) as d:
      gmm = (d["means"], d["covars"], d["weights"])
    spin = SpinSmplify(path, extra["J_regressor_extra"], gmm) if torch else None

    print(
      f"{'batch':>5s} {'fitter':22s} {'s/batch':>9s} {'fits/s':>9s} {'vs SPIN':>8s} "
      f"{'loss px^2':>10s} {'PA-MPJPE mm':>12s}"
    )
    joints = jax.jit(smpl_jax.forward_joints_batch)
    for batch in args.batches:
      gt, kp = synthetic.make_dataset(body, batch, seed=batch)
      init = near_start(gt, seed=1)
      truth = joints(body, gt.betas, gt.global_orient, gt.body_pose).joints
      start = joints(body, init.betas, init.global_orient, init.body_pose).joints
      loss0 = float(
        jnp.mean(jax.jit(jax.vmap(lambda k, p: smplify.fitting_loss(body, prior, k, p)))(kp, init))
      )
      print(
        f"{batch:5d} {'(start)':22s} {'':>9s} {'':>9s} {'':>8s} {loss0:10.2f} "
        f"{pa_mpjpe_mm(start, truth):12.1f}"
      )
      spin_rate = None
      repeats = 3 if batch <= 64 else 1
      if spin is not None and batch <= args.torch_max_batch:
        out, sec = timed(lambda: spin(init, kp), 1)
        spin_rate = batch / sec
        fitted = joints(body, out["betas"], out["global_orient"], out["body_pose"]).joints
        print(
          f"{batch:5d} {'SPIN torch adam 100+100':22s} {sec:9.3f} {spin_rate:9.1f} "
          f"{'1.0x':>8s} {np.mean(out['loss']):10.2f} {pa_mpjpe_mm(fitted, truth):12.1f}"
        )
      for config in args.configs:
        options, label = parse_config(config)
        fn = jax.jit(lambda k, i, o=options: smplify.fit_batch(body, prior, k, i, o))
        res, sec = timed(lambda: jax.block_until_ready(fn(kp, init)), repeats)
        fitted = joints(
          body, res.params.betas, res.params.global_orient, res.params.body_pose
        ).joints
        ratio = f"{batch / sec / spin_rate:7.1f}x" if spin_rate else "       -"
        print(
          f"{batch:5d} {label:22s} {sec:9.3f} {batch / sec:9.1f} "
          f"{ratio} {float(jnp.mean(res.loss)):10.2f} {pa_mpjpe_mm(fitted, truth):12.1f}"
        )

    if args.standalone_batch:
      # The dataset fitter's start (fitting.cli): prior mean pose, zero betas, facing the
      # camera, similar-triangles camera, 180-degree trial. This decides the CLI's default.
      from fitting import cli

      batch = args.standalone_batch
      gt, kp = synthetic.make_dataset(body, batch, seed=batch + 1)
      truth = joints(body, gt.betas, gt.global_orient, gt.body_pose).joints
      print(f"standalone start (no network), batch {batch}:")
      for config in ("adam:100", "adam:50:0.03", "adam:200", "lm:10", "lm:20", "lm:40"):
        options, label = parse_config(config)
        options = dataclasses.replace(options, try_flipped_orientation=True)
        fn = jax.jit(cli.standalone_fit_fn(body, prior, options))
        res, sec = timed(lambda: jax.block_until_ready(fn(kp)), 1)
        fitted = joints(
          body, res.params.betas, res.params.global_orient, res.params.body_pose
        ).joints
        print(
          f"{batch:5d} {label:22s} {sec:9.3f} {batch / sec:9.1f} {'':>8s} "
          f"{float(jnp.mean(res.loss)):10.2f} {pa_mpjpe_mm(fitted, truth):12.1f}"
        )


if __name__ == "__main__":
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    main()
