"""ImageNet weights for the backbone from a user-supplied torchvision ResNet file.

Nothing is downloaded: give the path of a torchvision-layout state dict (`conv1.weight`,
`bn1.running_mean`, `layer1.0.conv1.weight`, ..., `layer1.0.downsample.0.weight`; `fc.*` is
ignored as in SPIN), as `.safetensors` or, with torch installed, `.pth`/`.pt`. Convolution kernels
go from OIHW to HWIO; BatchNorm weight/bias/running_mean/running_var become
scale/bias/mean/var. Every backbone tensor must be present with the right shape.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def read_state_dict(path) -> dict[str, np.ndarray]:
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"pretrained weights {path} not found")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file

    return load_file(str(path))
  if path.suffix in (".pth", ".pt"):
    try:
      import torch
    except ImportError as e:
      raise ImportError(
        f"{path} is a PyTorch file: install torch, or convert it to .safetensors"
      ) from e
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    return {k: v.detach().numpy() for k, v in sd.items()}
  raise ValueError(f"{path}: expected a .safetensors or .pth file")


def flat_items(pure: dict, prefix=()):
  """(path, leaf) of a nested dict (an nnx pure dict), depth first."""
  for k, v in pure.items():
    if isinstance(v, dict):
      yield from flat_items(v, (*prefix, k))
    else:
      yield (*prefix, k), v


def set_item(pure: dict, path, value):
  """pure[path[0]][path[1]]... = value."""
  for k in path[:-1]:
    pure = pure[k]
  pure[path[-1]] = value


def _target(key: str):
  """torchvision key -> (path under `backbone` in the model's pure dict, transform)."""
  parts = key.split(".")
  *mods, leaf = parts
  path = tuple(int(p) if p.isdigit() else p for p in mods)
  is_conv = mods[-1].startswith("conv") or (
    len(mods) >= 2 and mods[-2] == "downsample" and mods[-1] == "0"
  )
  if is_conv:
    if leaf != "weight":
      return None
    return ("backbone", *path, "kernel"), lambda w: np.transpose(w, (2, 3, 1, 0))
  if leaf in _BN:
    return ("backbone", *path, _BN[leaf]), lambda w: w
  return None


def load_torchvision_resnet(path, params: nnx.State, rest: nnx.State):
  """(params, rest) with the backbone replaced by the file's weights."""
  sd = read_state_dict(path)
  pure = {"params": nnx.to_pure_dict(params), "rest": nnx.to_pure_dict(rest)}
  current = {}  # backbone path -> (group, array)
  for group in ("params", "rest"):
    for p, v in flat_items(pure[group]):
      if p[0] == "backbone":
        current[p] = (group, v)
  done = set()
  for key, value in sd.items():
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
      continue
    target = _target(key)
    if target is None or target[0] not in current:
      raise ValueError(
        f"{path}: tensor {key!r} has no place in this backbone (torchvision layout?)"
      )
    p, fn = target
    group, old = current[p]
    new = np.asarray(fn(np.asarray(value, np.float32)))
    if new.shape != old.shape:
      raise ValueError(
        f"{path}: {key} has shape {value.shape}; this backbone needs {old.shape} "
        "(after the layout change)"
      )
    set_item(pure[group], p, jnp.asarray(new))
    done.add(p)
  missing = sorted(".".join(map(str, p)) for p in current if p not in done)
  if missing:
    raise ValueError(f"{path} lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
  nnx.replace_by_pure_dict(params, pure["params"])
  nnx.replace_by_pure_dict(rest, pure["rest"])
  return params, rest
