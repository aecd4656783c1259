"""Unlabeled training queries and the teacher's embeddings of them, computed once and cached on disk."""

import contextlib
import gzip
import hashlib
import json
import logging
import os
import random
import re
import time
import zlib
from pathlib import Path

import torch
from datasets import load_dataset
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from .modeling_asymmetric import AsymmetricDualEncoder

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".tsv", ".tsv.gz", ".jsonl", ".jsonl.gz", ".txt", ".txt.gz")
CACHE_FILE = "teacher-embeddings-{}.safetensors"  # {} = the key of the teacher and texts
PLACEHOLDER_TOKEN = re.compile(r"\[.*\]|<.*>")  # `[unused12]`, `<extra_id_0>`: vocabulary rows no text produces


def open_text(path: Path):
    """Read a text file, gunzipping `.gz` files."""
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _numbered_lines(path: Path):
    """(line number, text) of each non-blank line of a UTF-8 file, gunzipping `.gz` files. A byte-order mark and
    CRLF line ends are read as plain text; undecodable bytes or a broken gzip stream raise a `ValueError` naming the
    file (and line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"{path}: line {number} is not UTF-8 text ({error.reason} at byte {error.start}); "
                        "re-encode the file as UTF-8."
                    ) from None
                if line.strip():
                    yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path}: the gzip stream is truncated or corrupt after line {number} ({error}); re-create the file."
        ) from None


def _read_local(path: Path, column: str) -> list[str]:
    name = path.name.removesuffix(".gz")
    texts = []
    for number, line in _numbered_lines(path):
        if name.endswith(".tsv"):
            row = line.split("\t", 1)
            if len(row) != 2:
                raise ValueError(f"{path}: line {number} is not `qid<TAB>text`: {line[:80]!r}")
            texts.append(row[1])
        elif name.endswith(".jsonl"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}: line {number} is not JSON ({error.msg}, column {error.colno}); each line is one record."
                ) from None
            if not isinstance(record, dict) or column not in record:
                fields = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{path}: line {number} has no {column!r} field (it has {fields}); set --queries_column."
                )
            texts.append(record[column])
        else:
            texts.append(line)
    return texts


def load_queries(source: str, split: str = "train", column: str = "text", subset: str | None = None) -> list[str]:
    """Query texts from a local `.tsv[.gz]` (`qid\\ttext`), `.jsonl[.gz]`, `.txt[.gz]` file or a Hub dataset."""
    path = Path(source).expanduser()
    if path.name.endswith(LOCAL_SUFFIXES) or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"Query file {source!r} does not exist.")
        if not path.name.endswith(LOCAL_SUFFIXES):
            raise ValueError(f"Query file {source!r}: unsupported format; use one of {LOCAL_SUFFIXES}.")
        texts = _read_local(path, column)
    else:
        try:  # a Hub dataset id, or a local dataset folder
            dataset = load_dataset(source, subset, split=split)
        except Exception as error:  # noqa: BLE001 - datasets raises many types; the user needs what and where
            kind = "dataset folder" if path.is_dir() else "Hub dataset"
            raise ValueError(
                f"Cannot read queries from {source!r} as a {kind} ({type(error).__name__}: {str(error)[:300]}); "
                f"give a {'/'.join(LOCAL_SUFFIXES)} file or a Hub dataset id."
            ) from error
        if column not in dataset.column_names:
            raise ValueError(f"Dataset {source!r} has no column {column!r}; columns: {dataset.column_names}.")
        texts = dataset[column]
    texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError(f"No queries found in {source!r}.")
    return texts


def split_queries(
    texts: list[str], num_eval: int, max_train_samples: int | None = None, seed: int = 42, dedup: bool = True
) -> tuple[list[str], list[str]]:
    """Deduplicate, shuffle with `seed`, hold out `num_eval` queries, cap the rest at `max_train_samples`."""
    if dedup:
        texts = list(dict.fromkeys(texts))
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    if num_eval >= len(texts):
        raise ValueError(f"num_eval_queries={num_eval} leaves no training queries out of {len(texts)}.")
    eval_texts, train_texts = texts[:num_eval], texts[num_eval:]
    return train_texts[:max_train_samples] if max_train_samples else train_texts, eval_texts


def join_queries(texts: list[str], fraction: float, seed: int = 42, max_joined: int = 2) -> list[str]:
    """`texts` followed by `fraction` x as many examples of 2 to `max_joined` of them joined into one longer text.

    Search queries are short (the shared ones: 10.6 tokens on average), so students see few long inputs and align
    them worst; joined queries add long query-like inputs. The plain queries come first, unchanged, so the teacher
    embeddings cached for them are reused and only the joined texts are embedded.
    """
    if fraction < 0:
        raise ValueError(f"joined_query_fraction must be >= 0, got {fraction}.")
    if max_joined < 2:
        raise ValueError(f"joined_query_max must be >= 2 (a joined example has two or more), got {max_joined}.")
    rng = random.Random(seed)

    def joined() -> str:  # at max_joined = 2 no count is drawn, so the pairs are those of earlier runs
        count = 2 if max_joined == 2 else rng.randint(2, max_joined)
        return " ".join(texts[rng.randrange(len(texts))] for _ in range(count))

    return texts + [joined() for _ in range(round(len(texts) * fraction))]


def vocabulary_queries(texts: list[str], fraction: float, tokenizer, seed: int = 42) -> list[str]:
    """`fraction` x as many pseudo-queries as `texts`, of tokens drawn uniformly from the tokenizer's vocabulary.

    Real queries use a small, frequent part of the vocabulary, so the student barely learns the rare,
    domain-specific words that queries of other domains are made of. Uniform draws give every token as many
    examples; each pseudo-query is as long (in tokens) as a randomly drawn real one. Measured: no better than as many
    more real queries (docs/results.md §2).
    """
    if fraction < 0:
        raise ValueError(f"vocabulary_query_fraction must be >= 0, got {fraction}.")
    count = round(len(texts) * fraction)
    if not count:
        return []
    special = set(tokenizer.all_special_ids)
    vocabulary = sorted(
        index
        for token, index in tokenizer.get_vocab().items()
        if index not in special and not PLACEHOLDER_TOKEN.fullmatch(token)
    )
    rng = random.Random(seed)
    samples = [texts[rng.randrange(len(texts))] for _ in range(count)]
    lengths = [max(len(ids), 1) for ids in tokenizer(samples, add_special_tokens=False)["input_ids"]]
    return [tokenizer.decode([rng.choice(vocabulary) for _ in range(length)]).strip() for length in lengths]


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


def _teacher_encoder(model: AsymmetricDualEncoder, prompt_type: str):
    """(the teacher's encode function for `prompt_type`, the prompt it puts first)."""
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}.")
    if prompt_type == "query":
        return model.encode_teacher_queries, model.config.query_prompt
    return model.encode_documents, model.config.document_prompt


def _cache_key(teacher: dict, texts: list[str]) -> tuple[str, dict]:
    """(file key, fields it hashes) of `texts` embedded by `teacher` (`teacher_fingerprint` and the prompt)."""
    fields = {**teacher, "data": fingerprint(texts), "count": len(texts)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32], fields


def _read_cached(path: Path, key: str, count: int) -> torch.Tensor | None:
    """The embeddings in a cache file whose metadata repeats `key`, that holds `count` rows, all finite; else None."""
    try:
        with safe_open(path, framework="pt") as f:
            if f.metadata().get("key") != key:
                return None
            embeddings = f.get_tensor("embeddings")
    except Exception:  # noqa: BLE001 - a missing or unreadable cache file is recomputed
        return None
    if embeddings.shape[0] != count:
        return None
    if not torch.isfinite(embeddings).all():
        logger.warning("%s holds non-finite teacher embeddings (NaN or inf): ignored, the teacher embeds again", path)
        return None
    return embeddings


def _write_cache(path: Path, embeddings: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write to a temporary file, then rename it into place: a reader never takes a half-written file, and a run
    killed mid-write leaves none. A cache that cannot be written (full disk) is skipped with a warning, the
    embeddings stay in memory."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": embeddings.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        logger.warning("Teacher embeddings not cached (%s: %s); this run keeps them in memory", path.parent, error)


def _cached_prefix(cache_dir: Path, teacher: dict, texts: list[str]) -> torch.Tensor | None:
    """Embeddings of the longest proper prefix of `texts` that this teacher already embedded.

    With a fixed split seed a larger `max_train_samples` extends the smaller run's queries, so only the new queries
    need the teacher (hours for a large teacher on CPU).
    """
    counts = set()
    for path in cache_dir.glob(CACHE_FILE.format("*")):
        try:
            with safe_open(path, framework="pt") as f:
                counts.add(int(f.metadata()["count"]))
        except Exception:  # noqa: BLE001 - files without a readable count are not candidates
            continue
    for count in sorted((c for c in counts if 0 < c < len(texts)), reverse=True):
        key, _ = _cache_key(teacher, texts[:count])
        embeddings = _read_cached(cache_dir / CACHE_FILE.format(key), key, count)
        if embeddings is not None:
            return embeddings
    return None


def cached_teacher_embeddings(
    model: AsymmetricDualEncoder,
    texts: list[str],
    cache_dir: str | os.PathLike,
    batch_size: int = 256,
    shared_prefix: int = 0,
    prompt_type: str = "query",
) -> torch.Tensor:
    """Teacher embeddings of `texts` as queries (with the teacher's query prompt, the distillation targets) or as
    documents (`prompt_type="document"`, with its document prompt), read from `cache_dir` when this teacher already
    embedded these texts so.

    The file name hashes the teacher identity, head, max length, prompt and the texts; the file's metadata repeats the
    key, so a renamed, truncated or stale file is recomputed rather than reused. When a cached file holds the first n
    texts, the teacher embeds only the rest. The first `shared_prefix` texts (the plain queries before added examples)
    are also cached on their own, so a later run without the additions reads them too.
    """
    encode, prompt = _teacher_encoder(model, prompt_type)
    teacher = teacher_fingerprint(model)
    if prompt:  # prompt-free teachers keep the keys of caches written before prompts were read
        teacher["prompt"] = prompt
    key, key_fields = _cache_key(teacher, texts)
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / CACHE_FILE.format(key)
    embeddings = _read_cached(path, key, len(texts))
    if embeddings is not None:
        logger.info("Teacher embeddings of %d texts read from %s", len(texts), path)
        return embeddings
    start = time.perf_counter()
    if 0 < shared_prefix < len(texts):
        cached_teacher_embeddings(model, texts[:shared_prefix], cache_dir, batch_size, prompt_type=prompt_type)
    prefix = _cached_prefix(cache_dir, teacher, texts)
    done = 0 if prefix is None else len(prefix)
    embeddings = encode(texts[done:], batch_size=batch_size, show_progress_bar=True)
    if not torch.isfinite(embeddings).all():
        raise FloatingPointError(
            f"The teacher's embeddings of {len(texts) - done} texts hold non-finite values (NaN or inf); its weights "
            "or dtype are broken. Nothing was cached."
        )
    if prefix is not None:
        embeddings = torch.cat([prefix, embeddings])
    logger.info(
        "Teacher embedded %d texts (%d more read from the cache) in %.1f s; cached in %s",
        len(texts) - done,
        done,
        time.perf_counter() - start,
        path,
    )
    _write_cache(path, embeddings, {"key": key, **{k: str(v) for k, v in key_fields.items()}})
    return embeddings


class QueryAlignmentDataset(Dataset):
    """(tokenized query, teacher embedding) pairs.

    Queries are tokenized once up front, as the student reads them (`model.tokenize_queries`: its prompt first), so
    that each item carries `input_ids`: the Trainer's `group_by_length` sampler reads their lengths and batches queries
    of similar length, which removes most padding (training queries average ~8 tokens, a random batch of 128 pads to
    ~21).
    """

    def __init__(self, texts: list[str], teacher_embeddings: torch.Tensor, model: AsymmetricDualEncoder):
        if len(texts) != teacher_embeddings.shape[0]:
            raise ValueError(f"{len(texts)} texts but {teacher_embeddings.shape[0]} teacher embeddings.")
        self.input_ids = model.tokenize_queries(texts)["input_ids"]
        self.teacher_embeddings = teacher_embeddings

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.input_ids[index], "teacher_embeddings": self.teacher_embeddings[index]}


def alignment_datasets(
    model: AsymmetricDualEncoder,
    text_lists: list[list[str]],
    cache_dir: str | os.PathLike,
    batch_size: int = 256,
    shared_prefixes: list[int] | None = None,
) -> list[QueryAlignmentDataset]:
    """One `QueryAlignmentDataset` per list of texts, with the teacher's embeddings from the cache (or computed);
    `shared_prefixes[i]` leading texts of list i are cached on their own too (see `cached_teacher_embeddings`)."""
    return [
        QueryAlignmentDataset(
            texts,
            cached_teacher_embeddings(model, texts, cache_dir, batch_size, shared),
            model,
        )
        for texts, shared in zip(text_lists, shared_prefixes or [0] * len(text_lists), strict=True)
    ]


class AlignmentCollator:
    """Pads a batch of tokenized queries and stacks their teacher embeddings."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        batch = self.tokenizer.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")
        batch["teacher_embeddings"] = torch.stack([f["teacher_embeddings"] for f in features])
        return dict(batch)
