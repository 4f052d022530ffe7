"""SPIN's fit-replacement rule against the stricter one, and where the validity threshold falls.

    python experiments/fit_rule.py [--steps 1000] [--out experiments/results/fit_rule]

SPIN keeps a new in-the-loop fit when it scores better than the stored one; this project used to
also require `fit.success` (the fit beats its own start under the network's camera),
`--config.fit.require_success=True` now. Both runs train the README's main job
(`experiments/configs/synthetic.py`: synthetic data, small ResNet at 128 px, 20 + 20 Adam fitting
steps) for `--steps` steps from the same start. From each run's TensorBoard log it reads, over
the last 20 % of the steps, the fraction of fits replaced per step and the fraction of stored
fits (of samples without ground truth) below 0.5, 1, 2 and 4 x the 100 px^2 threshold (scores
with the least-squares camera on the 24 ground-truth keypoints), and the validation MPJPE /
PA-MPJPE at the end. Writes `results.md`, `results.json` and `fit_rule.png` in --out (the runs
themselves go to --workdir); each run resumes from its checkpoint if interrupted.
"""

import argparse
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np

from smpl_jax.files import write_text_atomic
from spin_jax import train
from spin_jax.config import from_config_dict

HERE = Path(__file__).resolve().parent
RULES = {
  "spin": ("SPIN: better than the stored fit", False),
  "strict": ("... and than its start", True),
}
SCALARS = ("fits/update_rate", "fits/valid_rate") + tuple(
  f"fits/below_{m}x_threshold" for m in (0.5, 1, 2, 4)
)


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
  """TensorBoard event files (TFRecord framing: length, crc, event proto, crc) -> scalars."""
  from tensorboardX.proto import event_pb2

  out = {}
  for path in sorted(tb_dir.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
      (n,) = struct.unpack("<Q", data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
      pos += 12 + n + 4
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--steps", type=int, default=1000)
  ap.add_argument("--out", default=str(HERE / "results" / "fit_rule"))
  ap.add_argument("--workdir", default="outputs/fit_rule", help="the runs' checkpoints and logs")
  args = ap.parse_args()
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  spec = importlib.util.spec_from_file_location("cfg", HERE / "configs" / "synthetic.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  rows = {}
  for name, (label, strict) in RULES.items():
    cd = mod.get_config()
    cd.steps = args.steps
    cd.eval_every = args.steps
    cd.image_every = 10 * args.steps
    cd.fit.require_success = strict
    cd.workdir = str(Path(args.workdir) / name)
    result = train.run(from_config_dict(cd))
    scalars = read_scalars(Path(args.workdir) / name / "tb")
    tail = {k: float(np.mean([v for s, v in scalars[k] if s > 0.8 * args.steps])) for k in SCALARS}
    rows[name] = dict(label=label, val=result["val"], **tail, curve=scalars["fits/valid_rate"])
  write_text_atomic(out / "results.json", json.dumps(rows, indent=1))
  lines = [
    f"Main job for {args.steps} steps; fit fractions averaged over the last 20 % of the steps.",
    "",
    "| rule | fits replaced / step | valid (< 100 px^2) | < 50 | < 200 | < 400 "
    "| MPJPE mm | PA-MPJPE mm |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in rows.values():
    lines.append(
      f"| {r['label']} | {r['fits/update_rate']:.3f} | {r['fits/below_1x_threshold']:.3f} "
      f"| {r['fits/below_0.5x_threshold']:.3f} | {r['fits/below_2x_threshold']:.3f} "
      f"| {r['fits/below_4x_threshold']:.3f} | {r['val']['mpjpe']:.1f} "
      f"| {r['val']['pa_mpjpe']:.1f} |"
    )
  write_text_atomic(out / "results.md", "\n".join(lines) + "\n")
  print("\n".join(lines))
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 3.5))
  for r in rows.values():
    steps, values = zip(*r["curve"])
    ax.plot(steps, values, label=r["label"])
  ax.set_xlabel("step")
  ax.set_ylabel("supervised fraction")
  ax.legend()
  fig.tight_layout()
  fig.savefig(out / "fit_rule.png", dpi=120)
  print(f"wrote {out}/results.md, results.json, fit_rule.png")


if __name__ == "__main__":
  main()
