"""Demo (the README's main job until the trainer lands): fit SMPLify to synthetic keypoints.

    python -m fitting.demo --out outputs/demo

On the embedded open model: draws a batch of synthetic people, projects their SPIN joints into a
224 px crop with detector-like noise on the OpenPose rows, fits them from the dataset fitter's
standalone start (no network), and prints fits/s, the fitting loss and the 3D error. Writes
`fits.png` (top: ground truth, bottom: fits, both with their SPIN joints) and `bodies.png` /
`body0.obj` from the body-model demo.
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

import smpl_jax
from fitting import cli, metrics, priors, smplify, synthetic
from smpl_jax import demo as body_demo


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", default="outputs/demo")
  ap.add_argument("--model", default=None, help="SMPL .pkl/.npz (default: the open model)")
  ap.add_argument("--prior", default=None, help="gmm_08.pkl (default: the open prior)")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  body_demo.main(
    ["--out", str(out), "--seed", str(args.seed)] + (["--model", args.model] if args.model else [])
  )

  body = smpl_jax.load_model(args.model)
  prior = priors.load_gmm(args.prior)
  gt, kp = synthetic.make_dataset(body, args.batch, seed=args.seed)
  options = smplify.SmplifyOptions(
    num_iters=50, step_size=0.03, try_flipped_orientation=True, num_betas=min(10, body.num_betas)
  )
  fit = jax.jit(cli.standalone_fit_fn(body, prior, options))
  start = time.perf_counter()
  res = jax.block_until_ready(fit(kp))
  compiled = time.perf_counter() - start
  start = time.perf_counter()
  res = jax.block_until_ready(fit(kp))
  seconds = time.perf_counter() - start
  joints = jax.jit(smpl_jax.forward_joints_batch)
  truth = joints(body, gt.betas, gt.global_orient, gt.body_pose).joints
  p = res.params
  fitted = joints(body, p.betas, p.global_orient, p.body_pose).joints
  print(
    f"SMPLify (Adam 50+50, standalone start) on {args.batch} synthetic people: "
    f"{args.batch / seconds:,.0f} fits/s (first call with compilation {compiled:.1f} s); "
    f"success {float(np.mean(res.success)):.0%}; "
    f"fitting loss {float(np.mean(res.initial_loss)):.1f} -> {float(np.mean(res.loss)):.2f} px^2;"
    f" PA-MPJPE {1000 * float(metrics.pa_mpjpe(fitted, truth).mean()):.1f} mm"
  )

  shown = 4
  full = jax.jit(smpl_jax.forward_batch)
  faces = np.asarray(body.faces)
  rows = []
  for params in (gt, p):
    result = full(
      body, params.betas[:shown], params.global_orient[:shown], params.body_pose[:shown]
    )
    rows.append(
      [
        body_demo.render(
          np.asarray(result.vertices[i]),
          faces,
          np.asarray(result.joint_sets["spin49"][i]),
          size=320,
        )
        for i in range(shown)
      ]
    )
  tile = rows[0][0].size[0]
  montage = Image.new("RGB", (shown * tile, 2 * tile))
  for r, row in enumerate(rows):
    for i, img in enumerate(row):
      montage.paste(img, (i * tile, r * tile))
  montage.save(out / "fits.png")
  print(f"wrote {out / 'fits.png'} (top: ground truth, bottom: fits)")


if __name__ == "__main__":
  main()
