"""The teacher's embeddings of a list of texts, computed once and cached on disk.

A cache file is a safetensors file named by a key that hashes the teacher (name and revision, or its weights), its
head, max length, prompt, the storage dtype and the texts; its metadata repeats the key, so a renamed, stale or
truncated file is recomputed, never reused. Files are memory-mapped when read, and training reads them row by row
(`EmbeddingRows`): neither loads the whole tensor (10M queries x 768 dims are 31 GB in float32).

The teacher pass embeds shards of `SHARD_SIZE` texts, each written as its own file when done. Under several processes
(`accelerate launch`) each embeds every N-th missing shard, so N processes embed N times as fast; the shards' bounds do
not depend on N, so a run killed mid-pass, or a later run with another N, embeds only the shards not yet written.
"""

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .modeling_asymmetric import AsymmetricDualEncoder

logger = logging.getLogger(__name__)

CACHE_FILE = "teacher-embeddings-{}.safetensors"  # {} = the key of the teacher and texts
SHARD_FILE = "teacher-embeddings-{}.shard-{:012d}.safetensors"  # key, index of the shard's first text
SHARD_SIZE = 8192  # texts per shard: a killed teacher pass loses at most this many per process
EMBEDDING_DTYPES = {"float32": torch.float32, "float16": torch.float16}
TEACHER_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16}
_FINITE_CHECK_ROWS = 65536


def fingerprint(texts: list[str]) -> str:
    """Content hash of an ordered list of texts."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def teacher_fingerprint(model: AsymmetricDualEncoder) -> dict:
    """Identity of the document encoder: Hub name + revision, or a hash of its weights when there is no revision."""
    config = model.config
    identity = {"teacher": config.teacher_name_or_path, "revision": config.teacher_revision}
    if config.teacher_revision is None:
        digest = hashlib.sha256()
        head = {f"head.{name}": tensor for name, tensor in model.document_head.state_dict().items()}  # Dense layers
        for name, tensor in sorted({**model.document_encoder.state_dict(), **head}.items()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().float().numpy().tobytes())
        identity["weights"] = digest.hexdigest()
    identity.update(head=[{k: m[k] for k in ("type", "config")} for m in config.head], max_length=config.max_length)
    return identity


PROMPT_TYPES = ("query", "document")


def _teacher_encoder(model: AsymmetricDualEncoder, prompt_type: str, precision: str = "float32"):
    """The teacher's encode function for `prompt_type` (each puts its own prompt first), run under autocast to
    `precision` (`bfloat16`, `float16`) when that is not float32."""
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}.")
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(f"Unknown teacher precision {precision!r}; choose one of {tuple(TEACHER_PRECISIONS)}.")
    encode = model.encode_teacher_queries if prompt_type == "query" else model.encode_documents
    if precision == "float32":
        return encode

    def mixed_precision_encode(texts: list[str], **kwargs) -> torch.Tensor:
        with torch.autocast(model.device.type, dtype=TEACHER_PRECISIONS[precision]):
            return encode(texts, **kwargs)

    return mixed_precision_encode


def _teacher_identity(model: AsymmetricDualEncoder, prompt_type: str, dtype: str, precision: str) -> dict:
    """What a cache key hashes besides the texts: `teacher_fingerprint`, the prompt, the storage dtype and the
    precision the teacher computed in (bf16 embeddings are not the fp32 teacher's: never read as if they were)."""
    if dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"Unknown embedding dtype {dtype!r}; choose one of {tuple(EMBEDDING_DTYPES)}.")
    teacher = teacher_fingerprint(model)
    prompt = model.config.query_prompt if prompt_type == "query" else model.config.document_prompt
    if prompt:  # prompt-free teachers keep the keys of caches written before prompts were read
        teacher["prompt"] = prompt
    if dtype != "float32":  # float32 caches keep the keys they had before storage dtypes
        teacher["dtype"] = dtype
    if precision != "float32":
        teacher["precision"] = precision
    return teacher


def _cache_key(teacher: dict, texts: list[str]) -> tuple[str, dict[str, str]]:
    """(file key, the file's metadata: the key and the fields it hashes) of `texts` embedded by `teacher`."""
    fields = {**teacher, "data": fingerprint(texts), "count": len(texts)}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    return key, {"key": key, **{name: str(value) for name, value in fields.items()}}


class EmbeddingRows:
    """The embeddings of a cache file, read from disk when indexed: a row (`rows[i]`) or a slice (`rows[i:j]`).

    Training reads every row once an epoch, in random order. Through a memory map, each page it touches stays mapped
    into the process with the neighbours the kernel maps around each fault, so the process's resident memory grows
    toward the file's size within an epoch. Plain reads go through the page cache instead, which the kernel frees as
    it needs: the process holds only the rows in use. Each process (a DataLoader worker, forked or spawned) opens the
    file for itself.

    Args:
        embeddings (`np.memmap`):
            A cache file's embeddings as `_open_embeddings` maps them: the file, offset, dtype and shape to read.
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
        rows = torch.frombuffer(data, dtype=self.dtype).view(stop - start, self.shape[1]) if data else (
            torch.empty(0, self.shape[1], dtype=self.dtype))  # fmt: skip
        return rows if isinstance(index, slice) else rows[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}


def _open_embeddings(path: Path) -> tuple[dict, np.ndarray]:
    """(metadata, embeddings) of a cache file; the embeddings are memory-mapped (copy-on-write), rows are read from
    disk as they are used."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    info = header["embeddings"]
    begin, end = info["data_offsets"]
    dtype, shape = np.dtype(_NUMPY_DTYPES[info["dtype"]]), tuple(info["shape"])
    if end - begin != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: the header's shape and data size disagree")
    if not shape[0]:
        return header.get("__metadata__", {}), np.empty(shape, dtype)
    return header.get("__metadata__", {}), np.memmap(path, dtype, mode="c", offset=8 + size + begin, shape=shape)


def _all_finite(embeddings: np.ndarray) -> bool:
    """Every value is finite. A memory-mapped file is checked with plain reads in blocks, which go through the page
    cache, not this process's memory: the check does not map the whole file into the process."""
    if not isinstance(embeddings, np.memmap):
        return bool(np.isfinite(embeddings).all())
    block = _FINITE_CHECK_ROWS * embeddings.shape[1] * embeddings.itemsize
    with open(embeddings.filename, "rb") as f:
        f.seek(embeddings.offset)
        remaining = embeddings.nbytes
        while remaining:
            data = f.read(min(block, remaining))
            if not data or not np.isfinite(np.frombuffer(data, embeddings.dtype)).all():
                return False
            remaining -= len(data)
    return True


def _read_cached(path: Path, key: str, count: int, checked: bool = False) -> np.ndarray | None:
    """The embeddings in a cache file whose metadata repeats `key`, that holds `count` rows, all finite (memory-mapped
    unless empty); else None. `checked`: this pass wrote the file, or found it finite, so its values are not read."""
    try:
        metadata, embeddings = _open_embeddings(path)
    except Exception:  # noqa: BLE001 - a missing, truncated or unreadable cache file is recomputed
        return None
    if metadata.get("key") != key or embeddings.shape[0] != count:
        return None
    if not checked and not _all_finite(embeddings):
        logger.warning("%s holds non-finite teacher embeddings (NaN or inf): ignored, the teacher embeds again", path)
        return None
    return embeddings


def _write_cache(path: Path, embeddings: torch.Tensor, metadata: dict[str, str]) -> bool:
    """Write to a temporary file, then rename it into place: a reader never takes a half-written file, and a run
    killed mid-write leaves none. A cache that cannot be written (full disk) is skipped with a warning (False)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": embeddings.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, path)
        return True
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        logger.warning("Teacher embeddings not cached (%s: %s); this run keeps them in memory", path.parent, error)
        return False


def _count(path: Path) -> int:
    try:
        return int(_open_embeddings(path)[0]["count"])
    except Exception:  # noqa: BLE001 - files without a readable count are not candidates
        return 0


def _cached_prefix(cache_dir: Path, teacher: dict, texts: list[str]) -> torch.Tensor | None:
    """Embeddings of the longest proper prefix of `texts` that this teacher already embedded.

    With a fixed split seed a larger `max_train_samples` extends the smaller run's queries, so only the new queries
    need the teacher (hours for a large teacher on CPU).
    """
    counts = {_count(path) for path in cache_dir.glob(CACHE_FILE.format("*"))}
    for count in sorted((c for c in counts if 0 < c < len(texts)), reverse=True):
        key, _ = _cache_key(teacher, texts[:count])
        embeddings = _read_cached(cache_dir / CACHE_FILE.format(key), key, count)
        if embeddings is not None:
            return torch.from_numpy(embeddings)
    return None


def _shard(cache_dir: Path, key: str, first: int, end: int) -> tuple[Path, str]:
    """(file, key) of the shard holding texts `first` to `end` of the texts keyed `key`."""
    return cache_dir / SHARD_FILE.format(key, first), f"{key}:{first}:{end}"


def _embed_shards(encode, texts: list[str], start: int, cache_dir: Path, key: str, batch_size: int, dtype):
    """(embeddings of `texts[start:]` shard by shard, how many texts this process embedded). Each process embeds every
    N-th shard not written yet and writes it, then the main process reads every shard (the others get none).
    Collective: every process calls it."""
    state = PartialState()
    bounds = [(first, min(first + SHARD_SIZE, len(texts))) for first in range(start, len(texts), SHARD_SIZE)]
    mine = bounds[state.process_index :: state.num_processes]
    kept, embedded = {}, 0  # shards that could not be written stay in memory
    with tqdm(total=sum(end - first for first, end in mine), desc="Teacher: embedding texts", unit="text",
              disable=not state.is_main_process) as progress:  # fmt: skip
        for first, end in mine:
            path, shard_key = _shard(cache_dir, key, first, end)
            if _read_cached(path, shard_key, end - first) is None:
                shard = encode(texts[first:end], batch_size=batch_size).to(dtype)
                if not torch.isfinite(shard).all():
                    raise FloatingPointError(
                        f"The teacher's embeddings of texts {first} to {end} hold non-finite values (NaN or inf); its "
                        "weights or dtype are broken. They were not cached."
                    )
                embedded += end - first
                if not _write_cache(path, shard, {"key": shard_key}):
                    kept[first] = shard
            progress.update(end - first)
    state.wait_for_everyone()
    if kept and state.num_processes > 1:
        raise OSError(
            f"{cache_dir} is not writable, and {state.num_processes} processes share the teacher pass there."
        )
    if not state.is_main_process:  # the main process joins the shards and removes them, maybe while this one reads
        return [], embedded

    def read(first: int, end: int) -> torch.Tensor:  # each shard was checked when found or embedded
        return kept[first] if first in kept else torch.from_numpy(
            _read_cached(*_shard(cache_dir, key, first, end), end - first, checked=True))  # fmt: skip

    return [read(first, end) for first, end in bounds], embedded


def cached_teacher_embeddings(
    model: AsymmetricDualEncoder,
    texts: list[str],
    cache_dir: str | os.PathLike,
    batch_size: int = 256,
    shared_prefix: int = 0,
    prompt_type: str = "query",
    dtype: str = "float32",
    precision: str = "float32",
    rows: bool = False,
) -> torch.Tensor | EmbeddingRows:
    """Teacher embeddings of `texts` as queries (with the teacher's query prompt, the distillation targets) or as
    documents (`prompt_type="document"`, with its document prompt), read from `cache_dir` when this teacher already
    embedded these texts so.

    When a cached file holds the first n texts, the teacher embeds only the rest. The first `shared_prefix` texts
    (the plain queries before added examples) are also cached on their own, so a later run without the additions
    reads them too. `dtype` is how they are stored (`float16` halves the file); they are returned memory-mapped in it.
    `precision` (`bfloat16`, `float16`) runs the teacher under autocast, as mixed-precision training does; it is part
    of the key. `rows=True` returns them as `EmbeddingRows`, read from the file as they are indexed (what training
    does), instead of memory-mapped; a cache that could not be written returns them in memory either way.
    Under several processes every process must call it: they share the teacher pass (see the module's docstring).
    """
    encode = _teacher_encoder(model, prompt_type, precision)
    teacher = _teacher_identity(model, prompt_type, dtype, precision)
    key, metadata = _cache_key(teacher, texts)
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / CACHE_FILE.format(key)
    embeddings = _read_cached(path, key, len(texts))
    if embeddings is not None:
        logger.info("Teacher embeddings of %d texts read from %s", len(texts), path)
        return _as_read(embeddings, rows)
    start = time.perf_counter()
    if 0 < shared_prefix < len(texts):
        cached_teacher_embeddings(
            model, texts[:shared_prefix], cache_dir, batch_size, 0, prompt_type, dtype, precision
        )
    prefix = _cached_prefix(cache_dir, teacher, texts)
    done = 0 if prefix is None else len(prefix)
    shards, embedded = _embed_shards(encode, texts, done, cache_dir, key, batch_size, EMBEDDING_DTYPES[dtype])
    logger.info(
        "Teacher embedded %d texts in %.1f s (%d more read from the cache)",
        embedded,
        time.perf_counter() - start,
        len(texts) - embedded,
    )
    state = PartialState()
    written = True
    if state.is_main_process:
        embeddings = torch.cat(([prefix] if prefix is not None else []) + shards)
        written = _write_cache(path, embeddings, metadata)
        if written:
            for first in range(done, len(texts), SHARD_SIZE):
                _shard(cache_dir, key, first, 0)[0].unlink(missing_ok=True)
    state.wait_for_everyone()
    if not written:
        return embeddings
    return _as_read(_read_cached(path, key, len(texts), checked=True), rows)


def _as_read(embeddings: np.ndarray, rows: bool) -> torch.Tensor | EmbeddingRows:
    """A cache file's embeddings as `cached_teacher_embeddings` returns them: rows read when indexed, or a tensor."""
    return EmbeddingRows(embeddings) if rows and isinstance(embeddings, np.memmap) else torch.from_numpy(embeddings)


def write_teacher_embeddings(
    model: AsymmetricDualEncoder,
    texts: list[str],
    embeddings: torch.Tensor,
    cache_dir: str | os.PathLike,
    prompt_type: str = "query",
    dtype: str = "float32",
    precision: str = "float32",
) -> Path:
    """Store embeddings of `texts` computed elsewhere (another job, another machine) where `cached_teacher_embeddings`
    with the same teacher, texts, prompt type, dtype and precision reads them; returns the file."""
    if embeddings.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but {embeddings.shape[0]} embeddings.")
    _teacher_encoder(model, prompt_type, precision)  # checks the prompt type and precision
    key, metadata = _cache_key(_teacher_identity(model, prompt_type, dtype, precision), texts)
    path = Path(cache_dir).expanduser() / CACHE_FILE.format(key)
    if not _write_cache(path, embeddings.to(EMBEDDING_DTYPES[dtype]), metadata):
        raise OSError(f"Cannot write the teacher embeddings into {cache_dir}.")
    return path
