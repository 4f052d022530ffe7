"""A montage of augmented training examples with their keypoints drawn on, to look at.

    python -m spin_jax.data.montage --data_dir data/tfds --dataset spin_synthetic/default \
        --out outputs/montage.png

Green: the 24 ground-truth keypoints with the limbs between them (the body's left drawn
lighter); red: OpenPose rows. Each tile is labelled with its flip, rotation and scale.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from smpl_jax.files import write_atomic
from smpl_jax.joints import GT24
from spin_jax.data import pipeline

# J24 limbs (SPIN's 24 GT joints): legs, arms, neck and head, torso.
J24_LIMBS = (
  (0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11),
  (12, 13), (8, 12), (9, 12), (2, 14), (3, 14), (14, 15), (15, 12),
)  # fmt: skip
J24_LEFT = {3, 4, 5, 9, 10, 11}


def draw_example(batch: dict, k: int, mask_alpha: float = 0.0) -> Image.Image:
  img = Image.fromarray(batch["image"][k])
  res = img.size[0]
  if mask_alpha and "part_mask" in batch:
    tint = np.asarray(img, np.float32)
    m = batch["part_mask"][k] > 0
    tint[m] = (1 - mask_alpha) * tint[m] + mask_alpha * np.array([0, 120, 255])
    img = Image.fromarray(tint.astype(np.uint8))
  draw = ImageDraw.Draw(img)
  kp = batch["keypoints"][k].astype(np.float64)
  xy = (kp[:, :2] + 1.0) * res / 2.0
  gt, gt_conf = xy[GT24], kp[GT24, 2]
  for a, b in J24_LIMBS:
    if gt_conf[a] > 0 and gt_conf[b] > 0:
      colour = (150, 255, 150) if a in J24_LEFT or b in J24_LEFT else (0, 170, 0)
      draw.line([tuple(gt[a]), tuple(gt[b])], fill=colour, width=2)
  for j, (x, y) in enumerate(xy):
    if kp[j, 2] > 0:
      colour = (255, 40, 40) if j < 25 else (0, 255, 0)
      draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
  label = (
    f"{'flip ' if batch['is_flipped'][k] else ''}rot {batch['rot_deg'][k]:+.0f} "
    f"sc {batch['scale'][k]:.2f}"
  )
  draw.text((3, 3), label, fill=(255, 255, 255))
  return img


def montage(batch: dict, cols: int = 4) -> Image.Image:
  tiles = [np.asarray(draw_example(batch, k)) for k in range(len(batch["image"]))]
  rows = -(-len(tiles) // cols)
  tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
  grid = [np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)]
  return Image.fromarray(np.concatenate(grid, axis=0))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--data_dir", required=True)
  ap.add_argument("--dataset", default="spin_synthetic/default")
  ap.add_argument("--split", default="train")
  ap.add_argument("--num", type=int, default=16)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--no_augment", action="store_true")
  ap.add_argument("--out", required=True)
  args = ap.parse_args(argv)
  opts = pipeline.DataOptions(
    data_dir=args.data_dir,
    datasets=(args.dataset,),
    split=args.split,
    batch_size=args.num,
    seed=args.seed,
    augment=None if args.no_augment else pipeline.AugmentOptions(),
  )
  batch = next(pipeline.make_iterator(opts, process_index=0, process_count=1))
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  image = montage(batch)
  write_atomic(out, lambda fh: image.save(fh, format="PNG"))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
