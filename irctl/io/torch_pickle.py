"""Reading PyTorch checkpoint files (``.pth``, ``.ckpt``) without running any code from them.

A ``torch.save`` file is a zip archive: ``<name>/data.pkl`` is a pickle of the saved object whose
tensors refer, by persistent id, to raw storages stored as ``<name>/data/<key>``. Unpickling
with :mod:`pickle` as is would import and call whatever the pickle names — a downloaded file
could run ``os.system``. :func:`read_torch_file` unpickles with :class:`_SafeUnpickler`:

- the globals a tensor file needs are answered by irctl's own stand-ins, never imported:
  torch's tensor and parameter rebuild functions (``_rebuild_tensor_v2``, ``_rebuild_parameter``,
  ``_rebuild_parameter_with_state``), the storage types (``torch.FloatStorage`` … they only name
  a dtype) and the plain containers (``collections.OrderedDict``, ``builtins.set`` …);
- any other global becomes a :class:`Placeholder` *class*. An object of it (a pickled config
  object, e.g. Lightning's ``hyper_parameters``) is built inert: it records its arguments and
  state, no method of the real class runs and its module is never imported;
- *calling* any other global — what ``os.system``, ``exec`` or ``eval`` in a pickle does — raises
  :class:`UnsafePickleError` and nothing is returned.

The result holds tensors (built from the file's bytes with the storage's dtype and byte order),
plain containers, scalars, strings and placeholders only.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointFileError",
    "Placeholder",
    "UnsafePickleError",
    "read_torch_file",
]


class CheckpointFileError(ValueError):
    """A file that cannot be read as a PyTorch checkpoint; the message says why in one line."""


class UnsafePickleError(CheckpointFileError):
    """The pickle tries to call something other than a tensor rebuild or a plain container."""


_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` and the like mean in a persistent id: a dtype, nothing more."""

    dtype: torch.dtype


class _PlaceholderMeta(type):
    """Calling a placeholder class is what a pickle's REDUCE of an unknown global does (a
    function call): refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(
            f"the pickle calls {cls.__module__}.{cls.__qualname__}: refused (only tensors and "
            "plain containers are read; nothing in the file is run)"
        )


class Placeholder(metaclass=_PlaceholderMeta):
    """An object of a class the file names but irctl does not build: its module and class
    name, the arguments it was created with and its pickled state, all inert."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.__dict__["placeholder_args"] = args
        obj.__dict__["placeholder_state"] = None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.__dict__["placeholder_state"] = state

    def __repr__(self) -> str:
        return f"<placeholder {type(self).__module__}.{type(self).__qualname__}>"


@dataclass
class _Placeholders:
    """One placeholder class per (module, name), made on first sight."""

    classes: dict[tuple[str, str], type] = field(default_factory=dict)

    def get(self, module: str, name: str) -> type:
        key = (module, name)
        if key not in self.classes:
            cls = _PlaceholderMeta(name, (Placeholder,), {"__module__": module})
            cls.__qualname__ = name
            self.classes[key] = cls
        return self.classes[key]


def _rebuild_tensor(
    storage: torch.Tensor,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2's job on irctl's side: a view of the storage, checked to
    lie inside it (a damaged file must not read out of bounds)."""
    size, stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)
    if len(size) != len(stride) or any(v < 0 for v in (*size, *stride, offset)):
        raise CheckpointFileError(f"a tensor has an invalid layout: size {size}, stride {stride}")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel():
            raise CheckpointFileError(
                f"a tensor of size {size} reaches past its storage of {storage.numel()} values "
                "(a truncated or damaged file)"
            )
    return storage.as_strided(size, stride, offset).clone()


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, *_: Any) -> torch.Tensor:
    """An ``nn.Parameter`` in the file: its data (a plain tensor is all a state_dict needs)."""
    return data


def _encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode``, which protocol-2 pickles use to store bytes."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"the pickle encodes bytes as {encoding!r}: refused")
    return text.encode("latin1")


def _reconstructor(cls: type, base: type, state: Any = None) -> Any:
    """``copyreg._reconstructor``: how protocol-0/1 pickles make an object of a class. Only an
    inert placeholder (or a plain container) is made."""
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls.__new__(cls)
    if cls in _CONTAINERS.values():
        return cls()
    raise UnsafePickleError(f"the pickle reconstructs {cls!r}: refused")


_CONTAINERS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
}

_FUNCTIONS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _encode,
    ("copyreg", "_reconstructor"): _reconstructor,
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds tensors, plain containers and placeholders; never imports or calls the file's
    globals."""

    def __init__(self, data: bytes, storages: _Storages) -> None:
        super().__init__(io.BytesIO(data))
        self.storages = storages
        self.placeholders = _Placeholders()

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _FUNCTIONS:
            return _FUNCTIONS[key]
        if key in _CONTAINERS:
            return _CONTAINERS[key]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        return self.placeholders.get(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointFileError(f"unexpected persistent id {pid!r} (not a tensor storage)")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFileError(f"unknown storage type {storage_type!r}")
        return self.storages.load(str(key), storage_type.dtype, int(numel))


@dataclass
class _Storages:
    """The raw storages of a zip checkpoint, read on first use (a storage shared by several
    tensors is read once)."""

    archive: zipfile.ZipFile
    prefix: str
    big_endian: bool
    loaded: dict[str, torch.Tensor] = field(default_factory=dict)

    def load(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key in self.loaded:
            return self.loaded[key]
        name = f"{self.prefix}data/{key}"
        try:
            raw = self.archive.read(name)
        except KeyError:
            raise CheckpointFileError(f"storage {name} is missing (a truncated file?)") from None
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CheckpointFileError(f"storage {name} cannot be read: {err}") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) < numel * itemsize:
            raise CheckpointFileError(
                f"storage {name} holds {len(raw)} bytes, {numel * itemsize} expected "
                "(a truncated file?)"
            )
        tensor = (
            torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=dtype)
            if numel
            else (torch.empty(0, dtype=dtype))
        )
        if self.big_endian and itemsize > 1:
            tensor = _byteswap(tensor)
        self.loaded[key] = tensor
        return tensor


def _byteswap(tensor: torch.Tensor) -> torch.Tensor:
    as_bytes = tensor.view(torch.uint8).view(-1, tensor.element_size()).flip(-1)
    return as_bytes.contiguous().view(-1).view(tensor.dtype)


def read_torch_file(path: str | Path) -> Any:
    """The object a ``torch.save`` zip file holds, with tensors, plain containers and inert
    placeholders only. Raises :class:`UnsafePickleError` if the pickle calls anything else,
    :class:`CheckpointFileError` for a file that is not a readable torch checkpoint."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise CheckpointFileError(f"{path}: no such file") from None
    except zipfile.BadZipFile:
        raise CheckpointFileError(
            f"{path}: not a PyTorch zip checkpoint (truncated, or saved by torch < 1.6 with "
            "_use_new_zipfile_serialization=False, which irctl does not read)"
        ) from None
    except OSError as err:
        raise CheckpointFileError(f"{path}: cannot read ({err})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointFileError(
                f"{path}: expected one data.pkl in the archive, found {len(pickles)}"
            )
        prefix = pickles[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        big_endian = order in archive.namelist() and archive.read(order).strip() == b"big"
        storages = _Storages(archive, prefix, big_endian)
        try:
            data = archive.read(pickles[0])
            return _SafeUnpickler(data, storages).load()
        except CheckpointFileError as err:
            raise type(err)(f"{path}: {err}") from None
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError) as err:
            raise CheckpointFileError(f"{path}: damaged pickle ({err})") from None
