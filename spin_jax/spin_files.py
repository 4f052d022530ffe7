"""SPIN's released files in this project: the regressor checkpoint and the fits `.npy`.

**`model_checkpoint.pt`** (SPIN's trained network; `torch.save` of `{'model': state_dict,
'optimizer': ..., 'epoch': ..., ...}`): `load_spin_checkpoint` puts the state dict, in the key
layout of SPIN's `models/hmr.py` (class HMR), into this project's `Regressor` with the
`resnet50` preset. Only `'model'` is read; the other top-level entries (optimiser state, epoch,
batch index, dataset permutation, step count) are SPIN's training state and are ignored. The
keys map one to one: the backbone keeps torchvision's names in both, and the head's names
(`fc1`, `fc2`, `decpose`, `decshape`, `deccam`) are the same; SPIN's `init_shape` is
`init_betas` here. Convolution weights go OIHW -> HWIO, linear weights are transposed (a Flax
kernel is (in, out), torch's weight (out, in)), BatchNorm weight / bias / running_mean /
running_var become scale / bias / mean / var, and the (1, n) init buffers lose their batch axis.
Nothing is permuted: SPIN's `rot6d_to_rotmat` reads each joint's 6 numbers as `x.view(-1, 3, 2)`
(its columns a1, a2 are elements (0, 2, 4) and (1, 3, 5)), which is `smpl_jax.rotations`'
layout, so fc1's pose input block, decpose's output and init_pose are used as they are
(`tests/test_spin_files.py` checks the whole forward against an independent torch one).

**`<dataset>_fits.npy`** (SPIN's static fits, and the final fits SPIN saves beside its
checkpoints): a float array (N, 82), 72 axis-angle pose then 10 betas, row i the fit of row i of
the dataset's annotation npz. `init_table` accepts them wherever `fits.init_table` accepts the
fitter's npz. They record neither their input file nor its sha256, so only the row count can be
checked (a note says so, as for fitter files that cannot be checked); every row is used (SPIN's
fits have no success flag), and a non-finite row is an error, never silently replaced.

Reading a `.pt` needs torch (CPU is enough); nothing here imports it otherwise.
"""

import dataclasses
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from spin_jax import fits as fits_lib
from spin_jax.model import MeanParams, Regressor
from spin_jax.weights import flat_items, set_item

SPIN_FITS_WIDTH = 82  # 72 axis-angle pose + 10 betas per row (SPIN's train/fits_dict.py)

_LEAF_TO_TORCH = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_BUFFER_TO_TORCH = {"init_pose": "init_pose", "init_betas": "init_shape", "init_cam": "init_cam"}


# -- the checkpoint -------------------------------------------------------------------------------


def read_spin_state_dict(path) -> dict[str, np.ndarray]:
  """The `'model'` state dict of SPIN's checkpoint (or of a bare state dict saved with
  `torch.save`), as float32 numpy arrays; `*.num_batches_tracked` counters are dropped."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"SPIN checkpoint {path} not found")
  try:
    import torch
  except ImportError as err:
    raise ImportError(
      f"{path} is a PyTorch file: reading it needs torch (`pip install torch`; the CPU build is "
      "enough). It is only needed to convert the file, not to train or evaluate afterwards."
    ) from err
  with open(path, "rb") as fh:
    head = fh.read(4)
  # torch.save writes a zip archive (since torch 1.6) or, before, a pickle (protocol opcode).
  if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
    raise ValueError(
      f"{path} is not a PyTorch file torch can read (it starts with {head!r}, neither a zip "
      "archive nor a pickle); give SPIN's model_checkpoint.pt"
    )
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as err:
    if "weights only" not in str(err).lower():
      raise ValueError(f"{path} is not a PyTorch file torch can read ({err})") from err
    why = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
    raise ValueError(
      f"{path}: torch.load(weights_only=True) refused it: it holds Python objects other than "
      f"tensors and plain containers ({why[0] if why else 'see torch.load'}). If you trust the "
      "file, keep only its weights: python -c \"import torch; torch.save({'model': "
      "torch.load('IN', weights_only=False)['model']}, 'OUT')\""
    ) from err
  except Exception as err:  # torch raises RuntimeError, EOFError, ... for foreign files
    raise ValueError(
      f"{path} is not a PyTorch file torch can read ({type(err).__name__}: {err}); give SPIN's "
      "model_checkpoint.pt (torch.save of {'model': state_dict, ...})"
    ) from err
  if isinstance(obj, dict) and "model" in obj:
    sd = obj["model"]
  elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
    sd = obj
  else:
    keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
      f"{path} is a PyTorch file but not SPIN's checkpoint: expected a dict with 'model' (the "
      f"regressor's state dict); found {keys}"
    )
  if not isinstance(sd, dict):
    raise ValueError(f"{path}: 'model' is a {type(sd).__name__}, not a state dict")
  not_tensors = sorted(str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor))
  if not_tensors:
    raise ValueError(f"{path}: 'model' entries {not_tensors} are not tensors")
  return {
    str(k): v.detach().to(torch.float32).numpy()
    for k, v in sd.items()
    if not str(k).endswith("num_batches_tracked")
  }


def _torch_name(path: tuple, shape: tuple):
  """A model leaf (its path in the pure dict, its shape) -> (SPIN's key, the torch shape,
  torch array -> model array), or None for state SPIN's file does not have (dropout RNGs)."""
  if "rngs" in path:
    return None
  if len(path) == 1 and path[0] in _BUFFER_TO_TORCH:
    return _BUFFER_TO_TORCH[path[0]], (1, *shape), lambda w: w.reshape(shape)
  mods = [str(p) for p in (path[1:] if path[0] == "backbone" else path)]
  *mods, leaf = mods
  if leaf == "kernel" and len(shape) == 4:  # conv: HWIO here, OIHW in torch
    h, w, i, o = shape
    return ".".join([*mods, "weight"]), (o, i, h, w), lambda a: np.transpose(a, (2, 3, 1, 0))
  if leaf == "kernel" and len(shape) == 2:  # linear: (in, out) here, (out, in) in torch
    return ".".join([*mods, "weight"]), shape[::-1], lambda a: a.T
  if leaf in _LEAF_TO_TORCH:
    return ".".join([*mods, _LEAF_TO_TORCH[leaf]]), shape, lambda a: a
  raise RuntimeError(f"regressor leaf {path} has no SPIN counterpart: update spin_files")


def spin_layout(params: nnx.State, rest: nnx.State) -> dict[str, tuple]:
  """SPIN key -> (group 'params' or 'rest', path in that group's pure dict, torch shape,
  conversion) for every tensor SPIN's checkpoint must hold for this regressor."""
  out = {}
  for group, state in (("params", params), ("rest", rest)):
    for path, leaf in flat_items(nnx.to_pure_dict(state)):
      got = _torch_name(path, tuple(leaf.shape))
      if got is not None:
        out[got[0]] = (group, path, *got[1:])
  return out


def load_spin_checkpoint(path, params: nnx.State, rest: nnx.State):
  """(params, rest) of a `Regressor` with the `resnet50` preset, every tensor replaced by SPIN's
  checkpoint at `path` (BatchNorm running statistics and the mean-parameter buffers included;
  dropout RNG state is left as it was). All keys are checked before anything is replaced:
  missing, unexpected (other than `num_batches_tracked`) and misshaped ones are one error that
  lists them all. Works on abstract states too (`nnx.eval_shape`), for the checks."""
  sd = read_spin_state_dict(path)
  layout = spin_layout(params, rest)
  missing = [f"{k} {list(v[2])}" for k, v in layout.items() if k not in sd]
  extra = [f"{k} {list(v.shape)}" for k, v in sd.items() if k not in layout]
  misshaped = [
    f"{k} is {list(sd[k].shape)}, expected {list(v[2])}"
    for k, v in layout.items()
    if k in sd and tuple(sd[k].shape) != tuple(v[2])
  ]
  if missing or extra or misshaped:
    parts = []
    for what, items in (("missing", missing), ("unexpected", extra), ("wrong shape", misshaped)):
      if items:
        parts.append(f"{what} ({len(items)}):\n    " + "\n    ".join(items))
    raise ValueError(
      f"{path} is not SPIN's HMR regressor (ResNet-50 + iterative head, models/hmr.py) in the "
      "layout this model needs:\n  " + "\n  ".join(parts)
    )
  pure = {"params": nnx.to_pure_dict(params), "rest": nnx.to_pure_dict(rest)}
  for key, (group, p, _, convert) in layout.items():
    set_item(pure[group], p, jnp.asarray(np.ascontiguousarray(convert(sd[key])), jnp.float32))
  nnx.replace_by_pure_dict(params, pure["params"])
  nnx.replace_by_pure_dict(rest, pure["rest"])
  return params, rest


def spin_regressor(path, num_iters: int = 3):
  """(eval graphdef, params, rest) of SPIN's checkpoint as this project's ResNet-50 `Regressor`
  in eval mode (dropout off, BatchNorm on its running statistics), without initialising random
  weights first. The mean parameters come from the checkpoint's init buffers."""
  zeros = MeanParams(np.zeros(144, np.float32), np.zeros(10, np.float32), np.zeros(3, np.float32))
  model = nnx.eval_shape(lambda: Regressor(zeros, "resnet50", num_iters, rngs=nnx.Rngs(0)))
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = load_spin_checkpoint(path, params, rest)

  def concrete(leaf):  # the dropout RNG state: not in SPIN's file, unused in eval mode
    if not isinstance(leaf, jax.ShapeDtypeStruct):
      return leaf
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      return jax.random.key(0)
    return jnp.zeros(leaf.shape, leaf.dtype)

  nnx.replace_by_pure_dict(rest, jax.tree.map(concrete, nnx.to_pure_dict(rest)))
  return graphdef, params, rest


# -- the fits -------------------------------------------------------------------------------------


def read_spin_fits(path, num_rows: int, what: str) -> tuple[np.ndarray, np.ndarray]:
  """(pose (N, 72) axis-angle, betas (N, 10)) of SPIN's `<dataset>_fits.npy` for dataset `what`
  with `num_rows` rows, float32. Refuses a file of another shape (both numbers named) and one
  with non-finite rows (how many, and the first ones)."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"fits file {path} for {what} not found")
  try:
    arr = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as err:
    raise ValueError(f"fits file {path} for {what} is not a .npy array ({err})") from err
  if not isinstance(arr, np.ndarray):  # an npz read through a .npy name
    arr.close()
    raise ValueError(
      f"fits file {path} for {what} is an npz archive, not SPIN's .npy array: name the "
      "fitter's files .npz"
    )
  if arr.ndim != 2 or arr.shape[1] != SPIN_FITS_WIDTH:
    raise ValueError(
      f"fits file {path} for {what}: SPIN's fits are ({num_rows}, {SPIN_FITS_WIDTH}) (72 "
      f"axis-angle pose + 10 betas per row), got shape {arr.shape}"
    )
  if arr.shape[0] != num_rows:
    raise ValueError(
      f"fits file {path} has {arr.shape[0]} rows but {what} has {num_rows} (one per row of its "
      "annotation file, in its order): it was made for another dataset or version"
    )
  if not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(f"fits file {path} for {what} holds {arr.dtype}, not floating-point numbers")
  bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
  if len(bad):
    raise ValueError(
      f"fits file {path} for {what}: {len(bad)} of {num_rows} rows are not finite (first rows "
      f"{bad[:10].tolist()}); repair or refit them (python -m fitting.cli writes an npz whose "
      "failed rows are marked)"
    )
  arr = arr.astype(np.float32)
  return arr[:, :72], arr[:, 72:]


def init_table(
  layout: fits_lib.Layout,
  mean_pose: np.ndarray,
  fits_files: dict[int, str] | None = None,
  made_from: dict[int, tuple[str, list[dict]]] | None = None,
) -> fits_lib.FitsTable:
  """`fits.init_table`, also taking SPIN's `.npy` fits (by file suffix) in `fits_files`: their
  rows replace the dataset's rows whole. `made_from[dataset_id][0]` names the dataset in
  messages; a `.npy` cannot be checked against its files, so a note says so."""
  files = dict(fits_files or {})
  npy = {ds: p for ds, p in files.items() if Path(p).suffix == ".npy"}
  others = {ds: p for ds, p in files.items() if ds not in npy}
  table = fits_lib.init_table(layout, mean_pose, others, made_from)
  if not npy:
    return table
  sizes = dict(layout.datasets)
  pose, betas = np.array(table.pose), np.array(table.betas)
  for ds, path in npy.items():
    if ds not in sizes:
      raise ValueError(f"fits file {path} is for dataset id {ds}, which is not being trained on")
    what = made_from[ds][0] if made_from and ds in made_from else f"dataset id {ds}"
    p, b = read_spin_fits(path, sizes[ds], what)
    print(
      f"note: cannot check that fits file {path} (SPIN's .npy: no record of its input) was "
      f"made from {what}; only its row count ({sizes[ds]}) is checked"
    )
    pose[layout.rows(ds)] = p
    betas[layout.rows(ds)] = b
  return dataclasses.replace(table, pose=jnp.asarray(pose), betas=jnp.asarray(betas))
