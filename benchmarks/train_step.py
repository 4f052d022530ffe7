"""SPIN train-step time, split into the network and the in-the-loop fitting.

    python benchmarks/train_step.py [--batch 64] [--presets small,resnet50] [--steps 5]

For each backbone preset: the full step with SMPLify in the loop (SPIN), the same step with
fitting switched off (HMR-style regression: network forward/backward, losses, Adam), and the
fitting alone (SMPLify from a prediction-like start, `fit_batch`) at the same iterations. The
step is the one the trainer jits (`spin_jax.train_step.train_step`), on random images and
synthetic labels; timings are medians of `--steps` calls after one warm-up call.
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


def fake_batch(body, batch: int, res: int, seed=0):
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
    "has_smpl": np.arange(batch) % 2 == 0,
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
  args = ap.parse_args()
  body = smpl_jax.load_model()
  prior = priors.load_gmm()
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}); "
    f"batch {args.batch}"
  )
  print(
    f"{'preset':>9} {'res':>4} {'step (SPIN)':>12} {'no fitting':>11} {'fitting only':>13}"
    "  fit iters"
  )
  for preset in args.presets.split(","):
    res = 128 if preset == "small" else 224
    for run_fit in (True, False):
      cfg = TrainConfig(
        batch_size=args.batch,
        model=ModelOptions(backbone=preset, img_res=res),
        fit=FitOptions(run=run_fit, num_iters=args.fit_iters),
      )
      layout = fits_lib.Layout(((20, args.batch),))
      tx = optax.adam(cfg.lr)
      graphdef, _, state, _ = create_state(cfg, layout, tx)
      step = jax.jit(
        lambda s, b, m, p, cfg=cfg, g=graphdef, tx=tx: ts.train_step(
          s, b, m, p, graphdef=g, tx=tx, cfg=cfg
        )
      )
      batch = fake_batch(body, args.batch, res)
      t = timed(lambda: step(state, batch, body, prior), steps=args.steps)
      if run_fit:
        t_spin = t
      else:
        t_net = t
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
    print(
      f"{preset:>9} {res:>4} {t_spin:>11.3f}s {t_net:>10.3f}s {t_fit:>12.3f}s  "
      f"{args.fit_iters}+{args.fit_iters}"
    )


if __name__ == "__main__":
  main()
