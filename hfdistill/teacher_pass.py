"""The teacher's embeddings of a list of texts, computed once, shared between processes and cached on disk.

The teacher pass embeds shards of `SHARD_SIZE` texts, each written as its own file when done. Under several processes
(`accelerate launch`) each embeds every N-th missing shard, so N processes embed N times as fast; the shards' bounds do
not depend on N, so a run killed mid-pass, or a later run with another N, embeds only the shards not yet written. The
main process then joins the shards into one cache file (see `embedding_cache`) and removes them.
"""

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from .embedding_cache import (
    CACHE_FILE,
    EMBEDDING_DTYPES,
    TEACHER_PRECISIONS,
    EmbeddingRows,
    cache_identity,
    cache_key,
    cached_prefix,
    read_cached,
    write_cache,
)
from .modeling_asymmetric import AsymmetricDualEncoder

logger = logging.getLogger(__name__)

SHARD_FILE = "teacher-embeddings-{}.shard-{:012d}.safetensors"  # key, index of the shard's first text
SHARD_SIZE = 8192  # texts per shard: a killed teacher pass loses at most this many per process


def _teacher_encoder(model: AsymmetricDualEncoder, prompt_type: str, precision: str = "float32"):
    """The teacher's encode function for `prompt_type` (each puts its own prompt first), run under autocast to
    `precision` (`bfloat16`, `float16`) when that is not float32."""
    encode = model.encode_teacher_queries if prompt_type == "query" else model.encode_documents
    if precision == "float32":
        return encode

    def mixed_precision_encode(texts: list[str], **kwargs) -> torch.Tensor:
        with torch.autocast(model.device.type, dtype=TEACHER_PRECISIONS[precision]):
            return encode(texts, **kwargs)

    return mixed_precision_encode


def _shard(cache_dir: Path, key: str, first: int, end: int) -> tuple[Path, str]:
    """(file, key) of the shard holding texts `first` to `end` of the texts keyed `key`."""
    return cache_dir / SHARD_FILE.format(key, first), f"{key}:{first}:{end}"


def _embed(encode, texts: list[str], first: int, batch_size: int, dtype: torch.dtype, progress=None) -> torch.Tensor:
    """The teacher's embeddings of `texts` (from `first` on), refused if any is not finite; `progress` moves with each
    batch."""
    shard = encode(texts, batch_size=batch_size, progress=progress).to(dtype)
    if shard.shape[0] != len(texts):  # never cache a partial pass as if it were complete
        raise ValueError(f"The teacher returned {shard.shape[0]} embeddings for {len(texts)} texts; none were cached.")
    if not torch.isfinite(shard).all():
        raise FloatingPointError(
            f"The teacher's embeddings of texts {first} to {first + len(texts)} hold non-finite values (NaN or inf); "
            "its weights or dtype are broken. They were not cached."
        )
    return shard


def _embed_shards(encode, texts, start, cache_dir, key, batch_size, dtype) -> tuple[dict[int, torch.Tensor], int]:
    """Each process embeds every N-th shard of `texts[start:]` not written yet and writes it; returns the shards that
    could not be written (kept in memory) and how many texts this process embedded. Collective."""
    state = PartialState()
    bounds = [(first, min(first + SHARD_SIZE, len(texts))) for first in range(start, len(texts), SHARD_SIZE)]
    mine = bounds[state.process_index :: state.num_processes]
    kept, embedded = {}, 0
    with tqdm(
        total=sum(end - first for first, end in mine),
        desc="Teacher: embedding texts",
        unit="text",
        disable=not state.is_main_process,
    ) as progress:
        for first, end in mine:
            path, shard_key = _shard(cache_dir, key, first, end)
            if read_cached(path, shard_key, end - first) is None:
                shard = _embed(encode, texts[first:end], first, batch_size, dtype, progress)
                embedded += end - first
                if not write_cache(path, shard, {"key": shard_key}):
                    kept[first] = shard
            else:
                progress.update(end - first)
    state.wait_for_everyone()
    if kept and state.num_processes > 1:
        raise OSError(
            f"{cache_dir} is not writable, and {state.num_processes} processes share the teacher pass there."
        )
    return kept, embedded


def _join(encode, texts, start, cache_dir, key, batch_size, dtype, kept) -> tuple[list[torch.Tensor] | None, int]:
    """(the shards of `texts[start:]` in order, texts embedded again); None when another run sharing the cache folder
    joined them into the cache file meanwhile (and removed them). A shard that vanished otherwise is embedded again."""
    parts, embedded = [], 0
    for first in range(start, len(texts), SHARD_SIZE):
        end = min(first + SHARD_SIZE, len(texts))
        if first in kept:
            parts.append(kept[first])
            continue
        shard = read_cached(*_shard(cache_dir, key, first, end), end - first, checked=True)
        if shard is None:
            if (cache_dir / CACHE_FILE.format(key)).is_file():
                return None, embedded
            parts.append(_embed(encode, texts[first:end], first, batch_size, dtype))
            embedded += end - first
        else:
            parts.append(torch.from_numpy(shard))
    return parts, embedded


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

    When a cache file holds the first n texts, the teacher embeds only the rest. The first `shared_prefix` texts
    (the plain queries before added examples) are also cached on their own, so a later run without the additions
    reads them too. `dtype` is how they are stored (`float16` halves the file); they are returned memory-mapped in it.
    `precision` (`bfloat16`, `float16`) runs the teacher under autocast, as mixed-precision training does; it is part
    of the key. `rows=True` returns them as `EmbeddingRows`, read from the file as they are indexed (what training
    does), instead of memory-mapped; a cache that could not be written returns them in memory either way.
    Under several processes every process must call it: they share the teacher pass (see the module's docstring).
    """
    identity = cache_identity(model, prompt_type, dtype, precision)
    encode = _teacher_encoder(model, prompt_type, precision)
    key, metadata = cache_key(identity, texts)
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / CACHE_FILE.format(key)
    embeddings = read_cached(path, key, len(texts))
    if embeddings is not None:
        logger.info("Teacher embeddings of %d texts read from %s", len(texts), path)
        return _as_read(embeddings, rows)
    start = time.perf_counter()
    if 0 < shared_prefix < len(texts):
        cached_teacher_embeddings(
            model, texts[:shared_prefix], cache_dir, batch_size, 0, prompt_type, dtype, precision
        )
    prefix = cached_prefix(cache_dir, identity, texts)
    done = 0 if prefix is None else len(prefix)
    storage = EMBEDDING_DTYPES[dtype]
    kept, embedded = _embed_shards(encode, texts, done, cache_dir, key, batch_size, storage)
    state, written = PartialState(), True
    if state.is_main_process:
        parts, again = _join(encode, texts, done, cache_dir, key, batch_size, storage, kept)
        embedded += again
        if parts is not None:
            embeddings = torch.cat(([prefix] if prefix is not None else []) + parts)
            written = write_cache(path, embeddings, metadata)
            if written:
                for first in range(done, len(texts), SHARD_SIZE):
                    _shard(cache_dir, key, first, 0)[0].unlink(missing_ok=True)
    logger.info(
        "Teacher embedded %d texts in %.1f s (%d more read from the cache)",
        embedded,
        time.perf_counter() - start,
        len(texts) - embedded,
    )
    state.wait_for_everyone()
    if not written:
        return embeddings
    embeddings = read_cached(path, key, len(texts), checked=True)
    if embeddings is None:  # only where the main process could not write it, and told why
        raise OSError(f"The teacher embeddings could not be cached in {cache_dir}, which processes share.")
    return _as_read(embeddings, rows)


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
    key, metadata = cache_key(cache_identity(model, prompt_type, dtype, precision), texts)
    path = Path(cache_dir).expanduser() / CACHE_FILE.format(key)
    if not write_cache(path, embeddings.to(EMBEDDING_DTYPES[dtype]), metadata):
        raise OSError(f"Cannot write the teacher embeddings into {cache_dir}.")
    return path
