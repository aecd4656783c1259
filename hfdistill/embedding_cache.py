"""Cache files of teacher embeddings: their keys, how they are written and read back, and the rows training reads.

A cache file is a safetensors file named by a key that hashes the cache format's version, the teacher (name and
revision, or its weights), its head, max length, the prompt, the precision it computed in, the storage dtype and the
texts. Its metadata repeats the key's fields, the fingerprints of the texts' leading blocks (so a run on the first n of
these texts reads them from this file) and a digest of the values: a renamed, stale, truncated or edited file is never
read, only embedded again. Files are memory-mapped when read, and training reads them row by row (`EmbeddingRows`):
neither loads the whole tensor (10M queries x 768 dims are 31 GB in float32).
"""

import contextlib
import hashlib
import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from .modeling_asymmetric import AsymmetricDualEncoder

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # raised whenever what a key hashes changes: files of other versions are never read
CACHE_FILE = "teacher-embeddings-{}.safetensors"  # {} = the key of the teacher and texts
DEFAULT_CACHE_DIR = "~/.cache/hfdistill/embeddings"  # where teacher embeddings and scores are cached by default
PREFIX_BLOCK = 8192  # texts per block: a file records the fingerprint of each multiple of it that it holds
EMBEDDING_DTYPES = {"float32": torch.float32, "float16": torch.float16}
TEACHER_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT_TYPES = ("query", "document")
_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16}
_READ_BLOCK_BYTES = 64 * 2**20


def fingerprint(texts: list[str]) -> str:
    """Content hash of an ordered list of texts."""
    return prefix_fingerprints(texts, [len(texts)])[len(texts)]


def prefix_fingerprints(texts: list[str], lengths) -> dict[int, str]:
    """`{n: fingerprint(texts[:n])}` for each n of `lengths` (at most `len(texts)`), in one pass over the texts."""
    wanted, found = sorted(set(lengths)), {}
    digest, done = hashlib.sha256(), 0
    for length in wanted:
        for text in texts[done:length]:
            digest.update(text.encode("utf-8") + b"\0")
        done = length
        found[length] = digest.hexdigest()
    return found


def teacher_fingerprint(model: AsymmetricDualEncoder) -> dict:
    """Identity of the document encoder: Hub name + revision, or a hash of its weights when there is no revision;
    its head and max length."""
    config = model.config
    identity = {"teacher": config.teacher_name_or_path, "revision": config.teacher_revision}
    if config.teacher_revision is None:
        digest = hashlib.sha256()
        for name, tensor in model.teacher_tensors():
            digest.update(name.encode() + tensor.detach().cpu().contiguous().float().numpy().tobytes())
        identity["weights"] = digest.hexdigest()
    identity.update(head=[{k: m[k] for k in ("type", "config")} for m in config.head], max_length=config.max_length)
    return identity


def cache_identity(model: AsymmetricDualEncoder, prompt_type: str, dtype: str, precision: str) -> dict:
    """Everything a cache key hashes besides the texts: the format version, `teacher_fingerprint`, the prompt of
    `prompt_type`, the storage dtype and the precision the teacher computed in (bf16 embeddings are not the fp32
    teacher's: never read as if they were)."""
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}.")
    if dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"Unknown embedding dtype {dtype!r}; choose one of {tuple(EMBEDDING_DTYPES)}.")
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(f"Unknown teacher precision {precision!r}; choose one of {tuple(TEACHER_PRECISIONS)}.")
    prompt = model.config.query_prompt if prompt_type == "query" else model.config.document_prompt
    return {
        "version": CACHE_VERSION,
        **teacher_fingerprint(model),
        "prompt": prompt,
        "dtype": dtype,
        "precision": precision,
    }


def _hash(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def cache_key(identity: dict, texts: list[str]) -> tuple[str, dict[str, str]]:
    """(file key, the file's metadata) of `texts` embedded by the teacher of `identity`: the key, the identity's own
    hash, the fields hashed, and the fingerprint of every leading multiple of `PREFIX_BLOCK` texts."""
    blocks = range(PREFIX_BLOCK, len(texts), PREFIX_BLOCK)
    fingerprints = prefix_fingerprints(texts, [*blocks, len(texts)])
    fields = {**identity, "data": fingerprints[len(texts)], "count": len(texts)}
    key = _hash(fields)
    metadata = {"key": key, "identity": _hash(identity), **{name: str(value) for name, value in fields.items()}}
    metadata["prefixes"] = json.dumps({str(n): fingerprints[n] for n in blocks})
    return key, metadata


class EmbeddingRows:
    """The embeddings of a cache file, read from disk when indexed: a row (`rows[i]`) or a slice (`rows[i:j]`).

    Training reads every row once an epoch, in random order. Through a memory map, each page it touches stays mapped
    into the process with the neighbours the kernel maps around each fault, so the process's resident memory grows
    toward the file's size within an epoch. Plain reads go through the page cache instead, which the kernel frees as
    it needs: the process holds only the rows in use. Each process (a DataLoader worker, forked or spawned) opens the
    file for itself.

    Args:
        embeddings (`np.memmap`):
            A cache file's embeddings as `open_embeddings` maps them: the file, offset, dtype and shape to read.
    """

    def __init__(self, embeddings: np.memmap):
        self.path, self.offset, self.shape = embeddings.filename, embeddings.offset, torch.Size(embeddings.shape)
        self.dtype = torch.from_numpy(embeddings[:0]).dtype
        self.row_bytes = embeddings.shape[1] * embeddings.itemsize
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int | slice) -> torch.Tensor:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError(f"EmbeddingRows reads contiguous slices only, got step {step}.")
            stop = max(start, stop)
        else:
            start = range(len(self))[index]  # an IndexError out of range, as a tensor's
            stop = start + 1
        if self._file is None or self._pid != os.getpid():  # a forked DataLoader worker must not share the offset
            self._file, self._pid = open(self.path, "rb", buffering=0), os.getpid()  # noqa: SIM115 - kept open
        data = bytearray((stop - start) * self.row_bytes)
        self._file.seek(self.offset + start * self.row_bytes)
        if self._file.readinto(data) != len(data):
            raise OSError(f"{self.path} is shorter than its header says: rows {start} to {stop} cannot be read.")
        rows = (
            torch.frombuffer(data, dtype=self.dtype).view(stop - start, self.shape[1])
            if data
            else (torch.empty(0, self.shape[1], dtype=self.dtype))
        )
        return rows if isinstance(index, slice) else rows[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}


def read_metadata(path: Path) -> dict[str, str]:
    """A cache file's metadata, from its header alone; `{}` for a file that is not one."""
    try:
        return _header(path).get("__metadata__", {})
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a cache file
        return {}


def _header(path: Path) -> dict:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header["__offset__"] = 8 + size
    return header


def open_embeddings(path: Path) -> tuple[dict, np.ndarray]:
    """(metadata, embeddings) of a cache file; the embeddings are memory-mapped (copy-on-write), rows are read from
    disk as they are used."""
    header = _header(path)
    info = header["embeddings"]
    begin, end = info["data_offsets"]
    dtype, shape = np.dtype(_NUMPY_DTYPES[info["dtype"]]), tuple(info["shape"])
    if end - begin != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: the header's shape and data size disagree")
    metadata = header.get("__metadata__", {})
    if not shape[0]:
        return metadata, np.empty(shape, dtype)
    return metadata, np.memmap(path, dtype, mode="c", offset=header["__offset__"] + begin, shape=shape)


def _digest_and_finite(embeddings: np.ndarray) -> tuple[str, bool]:
    """(sha256 of the values' bytes, whether all are finite). A memory-mapped file is read in blocks, through the page
    cache rather than this process's memory."""
    digest, finite = hashlib.sha256(), True
    if not isinstance(embeddings, np.memmap):
        data = np.ascontiguousarray(embeddings).tobytes()
        digest.update(data)
        return digest.hexdigest(), bool(np.isfinite(embeddings).all())
    with open(embeddings.filename, "rb") as f:
        f.seek(embeddings.offset)
        remaining = embeddings.nbytes
        while remaining:
            data = f.read(min(_READ_BLOCK_BYTES - _READ_BLOCK_BYTES % embeddings.itemsize, remaining))
            if not data:
                return "", False
            digest.update(data)
            finite = finite and bool(np.isfinite(np.frombuffer(data, embeddings.dtype)).all())
            remaining -= len(data)
    return digest.hexdigest(), finite


def read_cached(path: Path, key: str, count: int, checked: bool = False) -> np.ndarray | None:
    """The embeddings in a cache file whose metadata repeats `key`, that holds `count` rows, whose values match their
    digest and are all finite (memory-mapped unless empty); else None. `checked`: this pass wrote the file, or found
    it intact, so its values are not read again."""
    try:
        metadata, embeddings = open_embeddings(path)
    except Exception:  # noqa: BLE001 - a missing, truncated or unreadable cache file is recomputed
        return None
    if metadata.get("key") != key or embeddings.shape[0] != count:
        return None
    if not checked:
        digest, finite = _digest_and_finite(embeddings)
        if digest != metadata.get("sha256") or not finite:
            problem = "non-finite teacher embeddings" if not finite else "values that differ from those written"
            logger.warning("%s holds %s: ignored, the teacher embeds again", path, problem)
            return None
    return embeddings


def write_cache(path: Path, embeddings: torch.Tensor, metadata: dict[str, str]) -> bool:
    """Write to a temporary file, then rename it into place: a reader never takes a half-written file, and a run
    killed mid-write leaves none. A cache that cannot be written (a full disk, a folder that is a file) is skipped with
    a warning (False)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    embeddings = embeddings.contiguous()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, _ = _digest_and_finite(embeddings.numpy())
        save_file({"embeddings": embeddings}, tmp, metadata={**metadata, "sha256": digest})
        os.replace(tmp, path)
        return True
    except (OSError, SafetensorError) as error:  # safetensors reports a full disk as its own error
        with contextlib.suppress(OSError):
            tmp.unlink()
        logger.warning("Teacher embeddings not cached (%s: %s); this run keeps them in memory", path.parent, error)
        return False


def cached_prefix(cache_dir: Path, identity: dict, texts: list[str]) -> torch.Tensor | None:
    """Embeddings of the longest leading part of `texts` that a cache file of this teacher holds: a whole file that
    holds fewer texts (a smaller run's queries, when a larger `max_train_samples` extends them), or a leading block
    of a file that holds more (a smaller run reading a larger one's). Only the rest needs the teacher."""
    wanted, candidates = _hash(identity), []
    for path in cache_dir.glob(CACHE_FILE.format("*")):
        metadata = read_metadata(path)
        if metadata.get("identity") != wanted or "count" not in metadata:
            continue
        count = int(metadata["count"])
        lengths = {n: fingerprint for n, fingerprint in json.loads(metadata.get("prefixes", "{}")).items()}
        lengths = {int(n): value for n, value in lengths.items()} | {count: metadata["data"]}
        candidates += [(n, value, path, metadata["key"], count) for n, value in lengths.items() if 0 < n < len(texts)]
    if not candidates:
        return None
    ours = prefix_fingerprints(texts, [n for n, *_ in candidates])
    for length, value, path, key, count in sorted(candidates, key=lambda c: -c[0]):
        if ours[length] == value and (embeddings := read_cached(path, key, count)) is not None:
            return torch.from_numpy(embeddings[:length])
    return None
