"""Builds the default pose prior of the open body model (fitting/data/open_pose_prior_gmm08.npz).

    python -m fitting.tools.build_open_prior

An 8-component full-covariance GMM fitted by EM (fitting.priors.fit_gmm) to 50,000 body poses
from the anatomical joint-limit sampler (fitting.pose_sampler). It plays the role of SMPLify's
gmm_08.pkl for the open model, but it is not that prior: it was fitted to joint ranges, not to
motion capture.
"""

import argparse
from importlib import resources
from pathlib import Path

import numpy as np

from fitting import pose_sampler, priors


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument(
    "--out", default=str(resources.files("fitting") / "data" / priors.DEFAULT_PRIOR_FILE)
  )
  ap.add_argument("--num-samples", type=int, default=50000)
  ap.add_argument("--num-components", type=int, default=8)
  ap.add_argument("--num-iters", type=int, default=100)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  poses = pose_sampler.sample_body_poses(args.num_samples, seed=args.seed).astype(np.float32)
  means, covars, weights, loglik = priors.fit_gmm(
    poses, args.num_components, args.num_iters, seed=args.seed
  )
  priors.save_gmm(
    args.out,
    means,
    covars,
    weights,
    source=np.asarray("fitting.pose_sampler joint-limit sampler (not mocap); see its docstring"),
    num_samples=args.num_samples,
    seed=args.seed,
    final_mean_loglik=loglik[-1],
  )
  print(
    f"wrote {Path(args.out)}: mean log-likelihood {loglik[0]:.2f} -> {loglik[-1]:.2f}, "
    f"weights {np.round(weights, 3).tolist()}"
  )


if __name__ == "__main__":
  main()
