"""A restricted unpickler for the CIFAR archives, which are untrusted input.

The official ``cifar-100-python`` files are Python-2 pickles of dicts holding lists, strings
and one uint8 numpy array. Unpickling only needs numpy's array reconstruction and dtypes;
any other global (``os.system``, ``builtins.eval``...) is refused *before* it is called.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from cifar_core.errors import DataError, UnsafePickleError

# The callables numpy's own pickles reference, resolved from numpy itself so the allow-list
# works across numpy 1.x (numpy.core) and 2.x (numpy._core) pickles.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]

_ALLOWED: dict[tuple[str, str], object] = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(_module, "scalar")] = _SCALAR
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
# Python 3 writes bytes at protocol 2 as _codecs.encode(text, "latin1"): harmless.
_ALLOWED[("_codecs", "encode")] = __import__("codecs").encode
for _module in ("builtins", "__builtin__"):
    for _name, _obj in {"list": list, "dict": dict, "tuple": tuple, "set": set,
                        "frozenset": frozenset, "bytearray": bytearray}.items():
        _ALLOWED[(_module, _name)] = _obj


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, *, source: str):
        # encoding="bytes" keeps Python-2 ``str`` objects as bytes (keys like b"data").
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to unpickle: it asks for '{module}.{name}', which a "
                "CIFAR data file never needs. The file may be malicious; nothing was executed."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: refused persistent id in pickle")


def _to_str_keys(value):
    """Decode Python-2 byte strings (keys, class names) to ``str``; leave arrays alone."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, dict):
        return {_to_str_keys(k): _to_str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_str_keys(v) for v in value]
    return value


def safe_load_pickle(data: bytes, *, source: str) -> dict:
    """Unpickle ``data`` with the allow-list; return a dict with ``str`` keys.

    ``source`` names the file in every error message.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or garbage pickles raise many different types
        raise DataError(
            f"{source}: not a readable CIFAR pickle, the file may be truncated or corrupted "
            f"({type(exc).__name__}: {exc})"
        ) from None
    obj = _to_str_keys(obj)
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a dict, found {type(obj).__name__}")
    return obj
