"""SPIN train-step time, split into the network and the in-the-loop fitting.

    python benchmarks/train_step.py [--batch 64] [--presets small,resnet50] [--steps 5]
                                    [--gt_fraction 0.3] [--chunks 1,4]

For each backbone preset: the full step with SMPLify in the loop fitting every sample (SPIN,
`fit.fit_gt=True`); the same step fitting only the samples without ground-truth SMPL, in each of
`--chunks` (`fit.chunks`); the step with fitting switched off (HMR-style regression: network
forward/backward, losses, Adam); and the fitting alone (SMPLify from a prediction-like start,
`fit_batch`) at the same iterations. `--gt_fraction` of the samples carry ground-truth SMPL
(SPIN's mix: Human3.6M, 30 %). The step is the one the trainer jits
(`spin_jax.train_step.train_step`), on random images and synthetic labels; timings are medians of
`--steps` calls after one warm-up call. `--json FILE` also writes the figures.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import smpl_jax
from fitting import priors, smplify, synthetic
from spin_jax import fits as fits_lib
from spin_jax import train_step as ts
from spin_jax.config import FitOptions, ModelOptions, TrainConfig
from spin_jax.train import create_state


def fake_batch(body, batch: int, res: int, seed=0, gt_fraction=0.5):
  params, kp = synthetic.make_dataset(body, batch, seed=seed)
  rng = np.random.default_rng(seed)
  kp = kp.copy()
  kp[..., :2] = 2 * kp[..., :2] / 224 - 1
  pose = np.concatenate([params.global_orient, params.body_pose], 1)
  return {
    "image": rng.integers(0, 256, (batch, res, res, 3), dtype=np.uint8),
    "keypoints": kp.astype(np.float32),
    "joints3d": np.concatenate(
      [rng.normal(size=(batch, 24, 3)), np.ones((batch, 24, 1))], 2
    ).astype(np.float32),
    "pose": pose.astype(np.float32),
    "betas": params.betas[:, :10].astype(np.float32),
    "has_smpl": rng.random(batch) < gt_fraction,
    "has_3d": np.arange(batch) % 2 == 0,
    "dataset_id": np.full(batch, 20, np.int32),
    "index": np.arange(batch, dtype=np.int32),
    "is_flipped": rng.random(batch) < 0.5,
    "rot_deg": rng.normal(size=batch).astype(np.float32) * 10,
  }


def timed(fn, *args, steps):
  out = fn(*args)
  jax.block_until_ready(out)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--presets", default="small,resnet50")
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--fit_iters", type=int, default=100)
  ap.add_argument("--gt_fraction", type=float, default=0.3)
  ap.add_argument("--chunks", default="1,4")
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  body = smpl_jax.load_model()
  prior = priors.load_gmm()
  chunks = [int(c) for c in args.chunks.split(",")]
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}); "
    f"batch {args.batch}; fit {args.fit_iters}+{args.fit_iters} iterations"
  )
  variants = [("SPIN (fit all)", dict(run=True, fit_gt=True))]
  variants += [
    (f"fit no-GT, {c} chunk(s)", dict(run=True, fit_gt=False, chunks=c)) for c in chunks
  ]
  variants += [("no fitting", dict(run=False))]
  rows = []
  for preset in args.presets.split(","):
    res = 128 if preset == "small" else 224
    batch = fake_batch(body, args.batch, res, gt_fraction=args.gt_fraction)
    n_gt = int(batch["has_smpl"].sum())
    for name, fit_over in variants:
      cfg = TrainConfig(
        batch_size=args.batch,
        model=ModelOptions(backbone=preset, img_res=res),
        fit=FitOptions(num_iters=args.fit_iters, **fit_over),
      )
      layout = fits_lib.Layout(((20, args.batch),))
      tx = optax.adam(cfg.lr)
      graphdef, _, state, _ = create_state(cfg, layout, tx)
      step = jax.jit(
        lambda s, b, m, p, cfg=cfg, g=graphdef, tx=tx: ts.train_step(
          s, b, m, p, graphdef=g, tx=tx, cfg=cfg
        )
      )
      t = timed(lambda: step(state, batch, body, prior), steps=args.steps)
      rows.append(dict(preset=preset, res=res, variant=name, seconds=t, gt=n_gt))
    opts = smplify.SmplifyOptions(num_iters=args.fit_iters)
    init = smplify.FitParams(
      jnp.asarray(batch["pose"][:, :3]) + 0.1,
      jnp.asarray(batch["pose"][:, 3:]),
      jnp.zeros((args.batch, 10)),
      jnp.tile(jnp.array([0.0, 0.0, 50.0]), (args.batch, 1)),
    )
    kp_px = ts.keypoints_px(jnp.asarray(batch["keypoints"]))
    fit = jax.jit(lambda k, i: smplify.fit_batch(body, prior, k, i, opts))
    t_fit = timed(fit, kp_px, init, steps=args.steps)
    rows.append(dict(preset=preset, res=res, variant="fitting only", seconds=t_fit, gt=n_gt))
  print(f"{'preset':>9} {'res':>4} {'GT':>3} {'variant':26s} {'s/step':>8} {'vs no fitting':>14}")
  for r in rows:
    base = next(
      x["seconds"] for x in rows if x["preset"] == r["preset"] and x["variant"] == "no fitting"
    )
    print(
      f"{r['preset']:>9} {r['res']:>4} {r['gt']:>3} {r['variant']:26s} {r['seconds']:>8.3f} "
      f"{r['seconds'] / base:>13.2f}x"
    )
  if args.json:
    import json

    from smpl_jax.files import write_text_atomic

    write_text_atomic(args.json, json.dumps(dict(batch=args.batch, rows=rows), indent=1))


if __name__ == "__main__":
  main()
