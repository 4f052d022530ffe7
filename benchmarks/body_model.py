"""Body-model throughput: smpl_jax forward and joints-only path against smplx, in one run.

    python benchmarks/body_model.py [--batches 1 64 1024] [--rounds 15]

Models: a synthetic file with SMPL's exact sizes (6890 vertices, 13776 faces, 10 betas, dense
non-zero pose blend shapes; written by this script as an SMPL-style pickle, with random stand-ins
for SPIN's J_regressor_extra / J_regressor_h36m beside it so that JAX computes all 49 + 17 SPIN
points as SPIN's wrapper does) and the embedded open model (13718 vertices, no pose blend shapes,
with its keypoints; its arrays written in SMPL's pickle layout for smplx). Each
(model, batch) cell alternates the contenders round by round and reports medians, so that load on
the machine hits them alike. smplx runs when the `bench` extra (smplx + torch CPU) is installed.
Printed: bodies/s, and each JAX figure's ratio to smplx's forward.
"""

import argparse
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import smpl_jax
from smpl_jax import toy

try:
  import smplx
  import torch
except ImportError:  # the bench extra is not installed
  smplx = torch = None


def write_smpl_pickle(path: Path, arrays: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "wb") as fh:
    pickle.dump(arrays, fh, protocol=2)


def open_model_arrays() -> dict:
  m = smpl_jax.load_open_model("full")
  nv = m.num_vertices
  return dict(
    v_template=np.asarray(m.v_template),
    shapedirs=np.asarray(m.shapedirs)[..., :10],
    posedirs=np.zeros((nv, 3, 207), np.float32),
    J_regressor=np.asarray(m.J_regressor),
    weights=np.asarray(m.weights),
    f=np.asarray(m.faces),
    kintree_table=np.stack([np.asarray(m.parents), np.arange(24)]),
  )


def params(batch: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return dict(
    betas=rng.normal(size=(batch, 10)).astype(np.float32),
    global_orient=(rng.normal(size=(batch, 3)) * 0.5).astype(np.float32),
    body_pose=(rng.normal(size=(batch, 69)) * 0.4).astype(np.float32),
    transl=np.zeros((batch, 3), np.float32),
  )


def contenders(jax_path: Path | None, smplx_path: Path, batch: int):
  """JAX on `jax_path` (None: the embedded open model, with its keypoints); smplx on the same
  arrays in SMPL's pickle layout."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # undefined SPIN joints are expected on the synthetic file
    model = smpl_jax.load_model(jax_path)
  p = {k: jax.device_put(v) for k, v in params(batch).items()}
  full = jax.jit(smpl_jax.forward_batch)
  joints = jax.jit(smpl_jax.forward_joints_batch)
  out = {
    "jax forward": lambda: jax.block_until_ready(full(model, **p)),
    "jax joints-only": lambda: jax.block_until_ready(joints(model, **p)),
  }
  if smplx is not None:
    layer = smplx.SMPL(model_path=str(smplx_path), num_betas=10, batch_size=batch)
    tp = {k: torch.as_tensor(v) for k, v in params(batch).items() if k != "transl"}

    def run_smplx():
      with torch.no_grad():
        return layer(**tp)

    out["smplx forward"] = run_smplx
  return out


def measure(fns: dict, rounds: int, min_time: float = 0.2, pause: float = 0.3) -> dict:
  """Median seconds per call. Contenders alternate within each round; `pause` lets the previous
  contender's worker threads go idle first (torch's OpenMP threads spin for a while after a call
  and would otherwise steal the cores from the next contender), and one untimed call then wakes
  the contender's own threads and caches before at least `min_time` of timed calls."""
  for fn in fns.values():  # compile / warm up
    fn()
    fn()
  reps = {}
  for name, fn in fns.items():  # calls per round so that a round lasts at least min_time
    t = time.perf_counter()
    fn()
    reps[name] = max(1, int(min_time / max(time.perf_counter() - t, 1e-6)))
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      time.sleep(pause)
      fn()
      t = time.perf_counter()
      for _ in range(reps[name]):
        fn()
      times[name].append((time.perf_counter() - t) / reps[name])
  return {name: float(np.median(ts)) for name, ts in times.items()}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
  ap.add_argument("--rounds", type=int, default=15)
  args = ap.parse_args(argv)
  if torch is not None:
    torch.set_num_threads(os.cpu_count())
  print(
    f"jax {jax.__version__} on {jax.devices()[0].device_kind}; "
    + (
      f"smplx + torch {torch.__version__} ({torch.get_num_threads()} threads)"
      if torch
      else "smplx not installed (pip install -e '.[bench]')"
    )
  )
  with tempfile.TemporaryDirectory() as tmp:
    smpl_sized = Path(tmp) / "smpl" / "SMPL_NEUTRAL.pkl"
    write_smpl_pickle(smpl_sized, toy.toy_smpl_arrays(seed=0))
    for name, reg in toy.toy_extra_regressors().items():  # SPIN's extra joints: 49 + 17 points
      np.save(smpl_sized.parent / f"{name}.npy", reg)
    open_pkl = Path(tmp) / "open" / "open.pkl"
    write_smpl_pickle(open_pkl, open_model_arrays())
    files = {
      "SMPL-sized synthetic (posedirs)": (smpl_sized, smpl_sized),
      "open model (13718 V)": (None, open_pkl),
    }
    header = (
      f"{'model':34s} {'batch':>5s} {'contender':16s} {'ms/call':>9s} "
      f"{'bodies/s':>11s} {'vs smplx':>9s}"
    )
    print(header)
    print("-" * len(header))
    for label, (jax_path, smplx_path) in files.items():
      for batch in args.batches:
        result = measure(
          contenders(jax_path, smplx_path, batch),
          args.rounds if batch < 1024 else max(5, args.rounds // 3),
        )
        ref = result.get("smplx forward")
        for name, sec in result.items():
          ratio = f"{ref / sec:8.2f}x" if ref else "       -"
          print(f"{label:34s} {batch:5d} {name:16s} {sec * 1e3:9.3f} {batch / sec:11,.0f} {ratio}")


if __name__ == "__main__":
  main()
