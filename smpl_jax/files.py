"""Writing files atomically, and a file's identity: the project's one place for both.

Every writer here goes through a unique temporary file in the target's folder (`mkstemp`), fsyncs
it, renames it over the target (`os.replace`) and fsyncs the folder, so readers see the old file
or the whole new one, never a mix, and two writers of the same path never share a temporary
file (a fixed `<name>.tmp` would let one writer rename the other's half-written file). The
result gets the permissions `open()` would give it.
"""

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

_UMASK = os.umask(0)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
  """Calls `write(fh)` on a binary file that replaces `path` as a whole once `write` returns;
  if it raises, `path` is left as it was and the temporary file is removed."""
  path = Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would
    with os.fdopen(fd, "wb") as fh:
      write(fh)
      fh.flush()
      os.fsync(fh.fileno())
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  dir_fd = os.open(path.parent, os.O_RDONLY)
  try:
    os.fsync(dir_fd)
  finally:
    os.close(dir_fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
  write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """`text` encoded as UTF-8."""
  write_bytes_atomic(path, text.encode())


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
  """An uncompressed `np.savez` archive (`write_atomic` with `np.savez_compressed` for a
  compressed one)."""
  write_atomic(path, lambda fh: np.savez(fh, **arrays))


def file_sha256(path: str | os.PathLike) -> str:
  """Hex sha256 of a file's bytes (read in 1 MiB blocks): the identity of an input file."""
  h = hashlib.sha256()
  with open(path, "rb") as fh:
    for block in iter(lambda: fh.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()
