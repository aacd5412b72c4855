"""Loading pickled checkpoints without running foreign code.

Every ``.pt``/``.bin`` file is read with ``torch.load(weights_only=True)``: only tensors and plain
containers are rebuilt. MultiModal-GPT's trainer additionally pickles its whole mmengine ``Config``
under ``tuning_config``; those few class names are allow-listed as *inert* stand-ins below (plain
containers that store what the pickle hands them and have no behaviour), so the LoRA settings can be
read without importing mmengine and without executing anything. Anything else that needs arbitrary
unpickling is refused unless the user passes ``--trust-checkpoint``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError


class InertConfig:
    """Stand-in for mmengine/mmcv ``Config``: keeps constructor args and pickled state only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_plain(self) -> Any:
        """The config's dict (mmengine stores ``(cfg_dict, filename, text, ...)`` as state)."""
        st = self.state
        if isinstance(st, tuple) and st:
            return to_plain(st[0])
        if isinstance(st, dict):
            return to_plain(st.get("_cfg_dict", st))
        return None


class InertConfigDict(dict):
    """Stand-in for mmengine ``ConfigDict`` / addict ``Dict``: a plain dict."""

    def __setstate__(self, state: Any) -> None:  # addict pickles its items as state in some versions
        if isinstance(state, dict):
            self.update(state)


_INERT = [
    (InertConfig, "mmengine.config.config.Config"),
    (InertConfigDict, "mmengine.config.config.ConfigDict"),
    (InertConfig, "mmcv.utils.config.Config"),
    (InertConfigDict, "mmcv.utils.config.ConfigDict"),
    (InertConfigDict, "addict.addict.Dict"),
]


def to_plain(obj: Any) -> Any:
    """Turn inert stand-ins (and nested containers) into plain dicts/lists."""
    if isinstance(obj, InertConfig):
        return obj.to_plain()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if isinstance(obj, list) else [to_plain(v) for v in obj]
    return obj


_GLOBAL_RE = re.compile(r"(?:Unsupported global: GLOBAL|global) ([\w.]+)")
_SAFE_PREFIXES = (
    "torch.",
    "collections.OrderedDict",
    "builtins.",
    "__builtin__.",
    "_codecs.encode",
    "numpy.core.multiarray._reconstruct",
    "numpy.dtype",
    "numpy.ndarray",
)


def pickle_globals(path: Path) -> list[str]:
    """Names of the globals a pickle (plain or inside a torch zip) would import, found by parsing its
    opcodes without executing anything."""
    import pickletools

    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if not names:
                return []
            data = zf.read(names[0])
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a truncated/odd pickle: report what was found so far
        pass
    inert = {n for _, n in _INERT}
    return [g for g in dict.fromkeys(found) if g not in inert and not g.startswith(_SAFE_PREFIXES)]


def is_old_protocol_pickle(path: Path, limit: int = 1 << 16) -> bool:
    """Whether the file starts like a protocol 0 or 1 pickle (no PROTO opcode): its opcodes parse
    (up to ``limit`` bytes, nothing executed) into a STOP or run past the sample without an error."""
    import pickletools

    with path.open("rb") as f:
        data = f.read(limit)
    if not data or data[:1] not in b"(]}NIFLSVcdlp.)KJMTGUXq":
        return False
    n = 0
    try:
        for op, _, _ in pickletools.genops(data):
            n += 1
            if op.proto >= 2:
                return False
            if op.name == "STOP":
                return n > 1
    except ValueError:  # garbage, or only the first ``limit`` bytes of a longer pickle were read
        return len(data) == limit and n >= 3
    return len(data) == limit and n >= 3


def load_checkpoint_file(path: str | Path, trust: bool = False) -> Any:
    """Load a checkpoint file safely. ``.safetensors`` never unpickles; pickles use weights_only."""
    path = Path(path)
    if not path.exists():
        raise UserError("checkpoint not found", path)
    if path.is_dir():
        raise UserError("is a folder, expected a checkpoint file", path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"not a readable safetensors file ({e})", path) from None
    with path.open("rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and (len(head) < 2 or head[0] != 0x80):
        if is_old_protocol_pickle(path):
            raise UserError(
                "a pickle of protocol 0/1 (the old text/binary pickle formats, not written by "
                "torch.save): cannot be loaded safely; re-save it with torch.save "
                "(protocol 2 or later)",
                path,
            )
        raise UserError("not a readable checkpoint (neither a torch zip archive nor a pickle)", path)
    try:
        with torch.serialization.safe_globals(_INERT):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = _GLOBAL_RE.search(msg)
        unsafe = [m.group(1)] if m else pickle_globals(path)
        if not trust:
            if unsafe:
                raise UserError(
                    f"refusing to unpickle: the file needs arbitrary code ({', '.join(unsafe[:3])}) to load; pass "
                    f"--trust-checkpoint only if you trust where this file came from",
                    path,
                ) from None
            raise UserError(
                "cannot be read with the safe loader (torch.load weights_only=True rejects its pickle format); "
                "re-save it with torch.save, or pass --trust-checkpoint only if you trust where this file came from",
                path,
            ) from None
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"not a readable checkpoint ({first})", path) from None
