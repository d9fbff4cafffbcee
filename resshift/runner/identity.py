"""Run identity: the fingerprint of everything that determines a run's outputs, and the folder lock.

A run folder belongs to one configuration. Its identity is the method (registered name, the parameters
asked for, and ``method.describe()``: every resolved parameter with its default, checkpoint SHA-256),
the data set (name, card SHA-256, protocol id, parameters with any folder made absolute), the image
selection (``limit``, ``select``, and the digest of every selected LR and HR file: a file replaced, added or
removed on disk changes it), the run seed, the device type and the precision. The metric list is
not part of it: adding a metric to a finished run extends that run. Beside it, a folder records the code that
made its rows (the SHA-256 of the package's Python sources and the versions of the packages that compute the
numbers, :data:`resshift.provenance.TRACKED_PACKAGES`): a session under other code is refused too, instead of
mixing its rows with the earlier ones. The code is not part of the fingerprint, which names one configuration
across code versions (what a regression check compares).

* The Hydra app names the folder ``<label>__<dataset>__<config fingerprint>`` (:func:`config_fingerprint`,
  computed from the config alone, 8 hex digits), so another seed, root, limit or parameter goes to
  another folder.
* :func:`claim` stores the full identity in ``identity.json`` on the first start and, on every later
  start, refuses a different one with a message that lists what differs (e.g. the checkpoint file
  changed on disk, or an explicit ``run.name`` reused for another configuration). Rows written into a
  folder therefore always belong to the configuration its ``identity.json`` records.
* :func:`lock_run_folder` holds an advisory lock while a process works in a folder: a second process
  stops with a message naming the holder; the shards of one ``torchrun`` run share the folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resshift.runfolder import RunFolder, write_json

#: Data set parameters that name folders or files: made absolute before fingerprinting.
PATH_PARAMS = ("root", "mirror", "lr_root", "hr_root", "path")


class RunIdentityError(RuntimeError):
    """A run folder holds rows of another configuration."""


class RunFolderBusy(RuntimeError):
    """Another process works in the run folder."""


def canonical(value: Any) -> Any:
    """A JSON-ready copy with sorted keys, lists for tuples, strings for paths (raises on other objects)."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"cannot fingerprint a {type(value).__name__}: {value!r}")


def fingerprint(identity: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``identity``."""
    text = json.dumps(canonical(identity), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_dataset_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Data set parameters with folder and file parameters made absolute (``~`` expanded)."""
    out = dict(params or {})
    for key in PATH_PARAMS:
        if isinstance(out.get(key), (str, Path)) and str(out[key]) not in ("", "???"):
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


def image_names(values: Any) -> list[str] | None:
    """``select=`` as strings, whatever the config parser made of them (``[100007]`` is an int there)."""
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    return [str(v) for v in values]


def config_identity(method: Mapping[str, Any], dataset: Mapping[str, Any], *, seed: Any, limit: Any,
                    select: Any, device: Any, dtype: Any) -> dict[str, Any]:
    """The part of a run's identity that the config alone determines (resolved Hydra nodes as dicts)."""
    return {
        "method": {"name": method.get("name"), "params": dict(method.get("params") or {})},
        "dataset": {"name": dataset.get("name"), "params": normalise_dataset_params(dataset.get("params"))},
        "images": {"limit": limit, "select": image_names(select)},
        "seed": seed,
        "device": str(torch_device_type(device)),
        "dtype": dtype,
    }


def torch_device_type(device: Any) -> str:
    """``"cuda"`` for ``"cuda:1"``: which card runs a job does not change its outputs."""
    return str(device or "cpu").split(":", 1)[0]


def config_fingerprint(**kwargs: Any) -> str:
    """8 hex digits of :func:`fingerprint` of :func:`config_identity` (the folder-name suffix)."""
    return fingerprint(config_identity(**kwargs))[:8]


def differences(old: Any, new: Any, prefix: str = "", most: int | None = 12) -> list[str]:
    """Dotted keys whose values differ between two identities, as ``key: old -> new`` lines (the first ``most``
    and a count of the others, e.g. when a whole data set's files changed)."""
    if most is not None:
        lines = differences(old, new, prefix, None)
        return lines if len(lines) <= most else [*lines[:most], f"... and {len(lines) - most} more"]
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{sub}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{sub}: {old[key]!r} -> (absent)")
            else:
                out.extend(differences(old[key], new[key], sub, None))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def claim(run_dir: Path, identity: Mapping[str, Any], code: Mapping[str, Any] | None = None) -> str:
    """Bind ``run_dir`` to ``identity`` and ``code`` (first start) or check that it is bound to them (resume).

    Returns the identity's fingerprint. Raises :class:`RunIdentityError` naming every difference when the folder
    already belongs to another identity, or (``code`` given) holds rows made by other code or by code it has no
    record of (a folder written before the code was recorded), or when it holds rows but no identity record (a
    folder written before run identities existed).
    """
    ident = canonical(identity)
    fp = fingerprint(ident)
    folder = RunFolder(run_dir)
    path = folder.identity_file
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("fingerprint") != fp:
            diff = differences(stored.get("identity", {}), ident) or ["(identity record differs)"]
            raise RunIdentityError(
                f"{run_dir}: this run folder holds results of another configuration; resuming would mix "
                "them. What differs (stored -> now):\n  " + "\n  ".join(diff)
                + "\nChoose another run.name or run.root for the new configuration, or delete the folder."
            )
        if code is not None and stored.get("code") != canonical(code):
            diff = (differences(stored["code"], canonical(code), "code") if stored.get("code") is not None
                    else ["code: (not recorded: the folder was written by an older version) -> now recorded"])
            raise RunIdentityError(
                f"{run_dir}: this run folder holds results of the same configuration made by other code; resuming "
                "would mix rows of two code versions. What differs (stored -> now):\n  " + "\n  ".join(diff)
                + "\nRun into another run.root (or run.name) to compare the versions, or delete the folder."
            )
        return fp
    if folder.has_rows():
        raise RunIdentityError(
            f"{run_dir}: holds result rows but no {path.name}, so nothing shows which configuration made "
            "them; move it away (or delete it) and run again."
        )
    record = {"fingerprint": fp, "identity": ident}
    if code is not None:
        record["code"] = canonical(code)
    write_json(path, record)
    return fp


#: Largest world size the launch lock tells apart (one byte of ``.run.lock-launch`` per world size).
MAX_WORLD = 1 << 20


def _hold_launch(run_dir: Path, world_size: int):
    """For a rank of a ``torchrun`` launch of ``world_size`` processes: a shared POSIX record lock on byte
    ``world_size`` of ``.run.lock-launch`` (the ranks of one launch share it), after checking that no process holds
    any other byte (a launch of another size working in the folder: its ranks would take other shards of the same
    images; probed for about a second, so the ranks of one launch never refuse each other). Two launches of
    different sizes starting at once both refuse. Returns the open file (the lock lives
    while it is open); raises :class:`RunFolderBusy`."""
    fh = open(Path(run_dir) / ".run.lock-launch", "a+", encoding="utf-8")  # noqa: SIM115 - held for the duration
    try:
        fcntl.lockf(fh, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, world_size)
    except (BlockingIOError, PermissionError):
        fh.close()
        raise RunFolderBusy(f"{run_dir}: the launch lock is held exclusively; wait for the other launch") from None
    # The probe takes the other bytes exclusively for an instant; ranks of this launch probing at the same moment
    # see each other's probe, a launch of another size holds its byte for its whole run: retry over ~1 s.
    rng = random.Random(os.getpid())
    for _ in range(100):
        try:
            for start, length in ((1, world_size - 1), (world_size + 1, MAX_WORLD - world_size)):
                if length > 0:
                    fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
                    fcntl.lockf(fh, fcntl.LOCK_UN, length, start)
            return fh
        except (BlockingIOError, PermissionError):
            time.sleep(0.002 + 0.015 * rng.random())
    fh.close()
    raise RunFolderBusy(f"{run_dir}: a launch with another number of processes is working in this run folder; "
                        "wait for it to finish")


@contextmanager
def lock_run_folder(run_dir: Path, rank: int = 0, world_size: int = 1) -> Iterator[None]:
    """Hold the run folder while working in it (advisory ``flock``; released when the process ends).

    A single process takes the folder exclusively. The ranks of one ``torchrun`` run take it shared
    and each takes its own shard exclusively, so they work side by side while no other run can enter; a
    launch with another number of processes is kept out too (:func:`_hold_launch`). Raises
    :class:`RunFolderBusy` at once (no waiting) when the folder is taken.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handles = []
    folder = RunFolder(run_dir)
    targets = [(folder.lock_file(), fcntl.LOCK_EX if world_size == 1 else fcntl.LOCK_SH)]
    if world_size > 1:
        targets.append((folder.lock_file(rank, world_size), fcntl.LOCK_EX))
    try:
        if world_size > 1:
            handles.append(_hold_launch(run_dir, world_size))
        for path, mode in targets:
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the duration
            try:
                fcntl.flock(fh, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise RunFolderBusy(
                    f"{run_dir}: another process is working in this run folder ({holder}); wait for it to "
                    "finish, or give this run another run.name"
                ) from None
            handles.append(fh)
            if mode == fcntl.LOCK_EX:
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                fh.flush()
        yield
    finally:
        for fh in reversed(handles):
            if not fh.name.endswith(".run.lock-launch"):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()  # also drops the record locks of .run.lock-launch
