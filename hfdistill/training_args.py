"""Arguments of a distillation run: which student, which queries, how to train (HfArgumentParser dataclasses)."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from .configuration_asymmetric import LAYER_STRATEGIES, POOLING_MODES
from .embedding_cache import EMBEDDING_DTYPES
from .losses import LOSSES

RUN_FILES = ("config.json", "model.safetensors", "trainer_state.json", "training_args.bin")


@dataclass
class StudentArguments:
    """
    Args:
        teacher (`str`): Hub id or local path of the teacher (kept frozen as the document encoder).
        teacher_revision (`str`, *optional*): Hub revision of the teacher.
        student_layers (`list[int]` or `"auto"`, *optional*): explicit 0-based teacher layers to keep (overrides the
            strategy), or `auto` (same as `layer_strategy: auto`). `[]` keeps none: a 0-layer student, the teacher's
            token embeddings, pooling and head trained to the same targets (on the command line:
            `--num_student_layers 0`).
        layer_strategy (`str`): `top_bottom`, `first`, `last`, `uniform` or `auto` (candidates ranked by how the
            untrained students agree with the teacher on the held-out queries), used when no indices are given.
        num_student_layers (`int`): number of layers the strategy keeps (0 for a 0-layer student).
        selection_training_steps (`int`): when > 0, `auto` then trains the proxy's top `selection_shortlist`
            candidates this many steps each (the run's recipe) and keeps the best by held-out cosine: how a set
            trains is what an untrained proxy cannot see.
        selection_shortlist (`int`): how many candidates those short runs train.
        pooling (`str`, *optional*): overrides the teacher's sentence-transformers pooling.
        query_prompt (`str`, *optional*): the teacher's query prompt, overriding its
            `config_sentence_transformers.json`.
        document_prompt (`str`, *optional*): the teacher's document prompt, likewise.
        query_prompt_name (`str`, *optional*): picks the teacher's query prompt by its name in that file.
        document_prompt_name (`str`, *optional*): picks the teacher's document prompt by its name in that file.
        student_query_prompt (`str`, *optional*): the student's query prompt; defaults to the teacher's. `""` trains a
            prompt-free student on raw queries against the teacher's prompted targets (fewer tokens per query).
        trust_remote_code (`bool`): allow a teacher whose architecture is custom code in its repository.
        share_token_embeddings (`bool`): the student uses the teacher's token embeddings, frozen, instead of a
            trainable copy; a saved student stores them once (for large vocabularies, most of the student's size).
        student_model (`str`, *optional*): a smaller encoder whose `student_layers` make the student instead of
            the teacher's (LEAF's students): its own tokenizer and pooling, and a Dense map to the teacher's size.
    """

    teacher: str = field(
        default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Hub id or local path of the teacher."}
    )
    teacher_revision: str | None = field(default=None, metadata={"help": "Hub revision of the teacher."})
    student_layers: list[str] | None = field(  # indices, or `auto`; converted to ints in __post_init__
        default=None,
        metadata={
            "help": "0-based teacher layers to keep, at least one, e.g. `0 5` (overrides the strategy), or `auto`."
        },
    )
    layer_strategy: str = field(
        default="top_bottom",
        metadata={"help": f"Layer selection when no indices are given: {LAYER_STRATEGIES} or auto (ranked by proxy)."},
    )
    num_student_layers: int = field(
        default=2, metadata={"help": "Number of layers the strategy keeps; 0: token embeddings and head only."}
    )
    selection_training_steps: int = field(
        default=50,
        metadata={"help": "`auto`: train the proxy's shortlist this many steps each; the best wins (0 = off)."},
    )
    selection_shortlist: int = field(default=4, metadata={"help": "`auto`: candidates the short runs train."})
    pooling: str | None = field(default=None, metadata={"help": f"Override the teacher's pooling: {POOLING_MODES}."})
    query_prompt: str | None = field(
        default=None, metadata={"help": "The teacher's query prompt (default: from its sentence-transformers config)."}
    )
    document_prompt: str | None = field(
        default=None,
        metadata={"help": "The teacher's document prompt (default: from its sentence-transformers config)."},
    )
    query_prompt_name: str | None = field(
        default=None,
        metadata={"help": "Pick the teacher's query prompt by name from its sentence-transformers config."},
    )
    document_prompt_name: str | None = field(
        default=None, metadata={"help": "Pick the teacher's document prompt by name from its config."}
    )
    student_query_prompt: str | None = field(
        default=None, metadata={"help": "The student's query prompt (default: the teacher's); \"\" = prompt-free."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow a teacher whose architecture is custom code in its repository."}
    )
    share_token_embeddings: bool = field(
        default=False,
        metadata={"help": "Use the teacher's token embeddings, frozen, instead of a trainable copy (stored once)."},
    )
    student_model: str | None = field(
        default=None,
        metadata={
            "help": "A smaller encoder (Hub id or path) whose layers make the student, with its own tokenizer, "
            "instead of the teacher's layers."
        },
    )

    def __post_init__(self):
        if self.student_layers in ("auto", ["auto"]):
            self.student_layers, self.layer_strategy = None, "auto"
        elif self.student_layers is not None:  # [] (a config's `student_layers: []`): a 0-layer student
            try:
                self.student_layers = [int(index) for index in self.student_layers]
            except (TypeError, ValueError):
                layers = self.student_layers
                raise ValueError(
                    f"student_layers must be 0-based layer indices (e.g. `0 5`) or `auto`, got {layers!r}."
                ) from None

    @property
    def teacher_kwargs(self) -> dict:
        """How the teacher is loaded, for `from_teacher` and `auto_select_layers` alike."""
        prompts = ("query_prompt", "document_prompt", "query_prompt_name", "document_prompt_name")
        return {
            "revision": self.teacher_revision,
            "pooling": self.pooling,
            "student_query_prompt": self.student_query_prompt,
            "trust_remote_code": self.trust_remote_code,
            **{name: getattr(self, name) for name in prompts},
        }

    @property
    def student_kwargs(self) -> dict:
        """How the student is built from the teacher, for `from_teacher` in the recipe and in layer trials."""
        return {
            "share_token_embeddings": self.share_token_embeddings,
            "student_model": self.student_model,
            **self.teacher_kwargs,
        }


@dataclass
class QueryDataArguments:
    """
    Args:
        train_queries (`str`): local `.tsv[.gz]`/`.jsonl[.gz]`/`.txt[.gz]` file or Hub dataset id of unlabeled queries.
        queries_subset (`str`, *optional*): subset (config name) of a Hub dataset.
        queries_split (`str`): split of a Hub dataset.
        queries_column (`str`): text column of a Hub dataset or jsonl file.
        max_train_samples (`int`, *optional*): cap on training queries after dedup and shuffle.
        num_eval_queries (`int`): held-out queries for the eval loss and mean cosine.
        split_seed (`int`, *optional*): seed of the shuffle that picks the held-out and capped queries; by default the
            training seed. Fixing it repeats a run with another `seed` on the same queries (and cached embeddings).
        embedding_cache_dir (`str`): where teacher embeddings are cached (keyed by teacher, revision and data).
        teacher_batch_size (`int`): batch size when the teacher embeds the queries.
        embedding_dtype (`str`): how teacher embeddings are stored in the cache; `float16` halves the file.
        joined_query_fraction (`float`): adds this fraction x the training queries as examples of training queries
            joined into one longer text (held-out queries stay real); 0 = off.
        joined_query_max (`int`): each joined example joins 2 to this many queries (uniformly drawn); 2 = pairs.
    """

    train_queries: str = field(
        metadata={"help": "Local .tsv[.gz] (qid<TAB>text), .jsonl[.gz], .txt[.gz] file, or a Hub dataset id."},
    )
    queries_subset: str | None = field(default=None, metadata={"help": "Subset (config name) of a Hub dataset."})
    queries_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    queries_column: str = field(default="text", metadata={"help": "Text column of a Hub dataset or jsonl file."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on training queries."})
    num_eval_queries: int = field(default=2000, metadata={"help": "Held-out queries for eval loss and cosine."})
    split_seed: int | None = field(
        default=None, metadata={"help": "Seed of the held-out/train split (default: the training seed)."}
    )
    embedding_cache_dir: str = field(
        default="~/.cache/hfdistill/embeddings", metadata={"help": "Cache of teacher embeddings."}
    )
    teacher_batch_size: int = field(default=64, metadata={"help": "Batch size of the teacher's encoding."})
    embedding_dtype: str = field(
        default="float32",
        metadata={"help": f"How teacher embeddings are stored in the cache: {tuple(EMBEDDING_DTYPES)}."},
    )
    joined_query_fraction: float = field(
        default=0.0, metadata={"help": "Add this fraction x the training queries as joined ones (0 = off)."}
    )
    joined_query_max: int = field(
        default=2, metadata={"help": "Queries per joined example: 2 to this many, uniformly drawn (2 = pairs)."}
    )

    def __post_init__(self):
        if self.embedding_dtype not in EMBEDDING_DTYPES:
            raise ValueError(
                f"Unknown embedding_dtype {self.embedding_dtype!r}; choose one of {tuple(EMBEDDING_DTYPES)}."
            )
        for name in ("num_eval_queries", "teacher_batch_size", "max_train_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")

    def split_seed_for(self, seed: int) -> int:
        """The seed of the held-out/train shuffle and the joined examples: `split_seed`, else the training seed."""
        return seed if self.split_seed is None else self.split_seed


@dataclass
class EmbeddingAlignmentConfig(TrainingArguments):
    """
    Defaults follow the paper: batch 128, lr 1e-4, AdamW, 1,000 warmup steps, 1 epoch; batches group queries of
    similar length (`train_sampling_strategy="group_by_length"`), which only removes padding. AdamW's epsilon stays
    transformers' 1e-8: BERT's 1e-6 is above the `mse` loss's per-parameter gradients on normalized embeddings and
    would silently shrink its steps.

    Args:
        loss (`str`): `mse` (paper), `cosine`, `mse+cosine` or `l2` between student and teacher embeddings.
        overwrite_output_dir (`bool`): allow writing into an output directory that already holds a run.
        retrieval_eval_dir (`str`, *optional*): BEIR-format folder (`corpus.jsonl[.gz]`, `queries.jsonl`,
            `qrels/test.tsv`); every evaluation then also logs the student's `eval_ndcg_at_10` and `eval_retention`,
            usable as `metric_for_best_model`.
        retrieval_cache_dir (`str`): where the teacher's document embeddings for that folder are cached.
        hub_model_id (`str`, *optional*): with `push_to_hub`, defaults to the output folder's name, as Trainer's.
    """

    loss: str = field(default="mse", metadata={"help": f"Alignment loss: {LOSSES}."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output directory that already holds a run."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=256, metadata={"help": "Evaluation batch size per device."})
    warmup_steps: float = field(default=1000, metadata={"help": "Linear warmup steps (or ratio if < 1)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Training epochs."})
    logging_steps: float = field(default=50, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator needs the teacher embeddings."}
    )
    train_sampling_strategy: str = field(
        default="random",
        metadata={"help": "How batches are drawn: `random`, or `group_by_length` (queries of similar length)."},
    )
    length_chunk_cost: int | None = field(
        default=32,
        metadata={
            "help": "Encode each training batch in chunks of similar-length queries, each padded to its own longest; "
            "a chunk costs this many tokens of overhead (`None`: one padded batch)."
        },
    )
    retrieval_eval_dir: str | None = field(
        default=None,
        metadata={"help": "BEIR-format folder: log eval_ndcg_at_10 and eval_retention at every evaluation."},
    )
    retrieval_cache_dir: str = field(
        default="~/.cache/hfdistill/embeddings", metadata={"help": "Cache of the teacher's retrieval embeddings."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {LOSSES}.")
        if self.learning_rate < 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate}.")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.dataloader_pin_memory and (self.use_cpu or not torch.accelerator.is_available()):
            self.dataloader_pin_memory = False  # pinned memory only helps copies to an accelerator
        if self.label_names is None:
            self.label_names = ["teacher_embeddings"]
        if self.push_to_hub and self.hub_model_id is None:  # Trainer's default, named before the run checks access
            self.hub_model_id = Path(self.output_dir).absolute().name
        if self.retrieval_eval_dir is not None and not Path(self.retrieval_eval_dir).is_dir():
            raise FileNotFoundError(f"retrieval_eval_dir {self.retrieval_eval_dir!r} is not a folder.")
        if self.resume_from_checkpoint in ("true", "True", "last"):
            self.resume_from_checkpoint = True
        holds_run = Path(self.output_dir).is_dir() and any(
            path.name in RUN_FILES or path.name.startswith("checkpoint-") for path in Path(self.output_dir).iterdir()
        )
        if holds_run and not (self.overwrite_output_dir or self.resume_from_checkpoint):
            raise ValueError(
                f"Output directory {self.output_dir!r} already holds a run; pass --overwrite_output_dir to replace "
                "it, --resume_from_checkpoint true to continue it, or choose another --output_dir."
            )

    def __getstate__(self) -> dict:
        """Pickled arguments (Trainer's `training_args.bin`, in the output folder, every checkpoint and a Hub push)
        never hold the Hub token: the run keeps it in memory only."""
        return {**self.__dict__, "hub_token": None}


@dataclass
class PublishCheckArguments:
    """
    A check before a push (`recipes/push.py`, `recipes/distill.py --push_to_hub`): the student's agreement with its
    teacher on the publisher's own queries and documents, written into the card; no relevance labels needed.

    Args:
        check_queries (`str`, *optional*): queries to check on: a local file or a Hub dataset (as `train_queries`).
        check_documents (`str`, *optional*): documents to rank them against, likewise.
        check_column (`str`, *optional*, defaults to `"text"`): the text column of a Hub dataset or jsonl file.
        check_max_queries (`int`, *optional*, defaults to `1000`): queries used, the first of the file.
        check_max_documents (`int`, *optional*, defaults to `10000`): documents used, likewise.
        min_top10_overlap (`float`, *optional*): refuse the push below this mean share of the teacher's top 10
            documents that the student also ranks in its top 10.
        push_anyway (`bool`, *optional*, defaults to `False`): push even below `min_top10_overlap`.
    """

    check_queries: str | None = field(default=None, metadata={"help": "Queries to check agreement on (file or Hub)."})
    check_documents: str | None = field(default=None, metadata={"help": "Documents to rank them against."})
    check_column: str = field(default="text", metadata={"help": "Text column of a Hub dataset or jsonl file."})
    check_max_queries: int = field(default=1000, metadata={"help": "Queries used (the first of the file)."})
    check_max_documents: int = field(default=10000, metadata={"help": "Documents used (the first of the file)."})
    min_top10_overlap: float | None = field(
        default=None, metadata={"help": "Refuse the push below this top-10 overlap with the teacher (0 to 1)."}
    )
    push_anyway: bool = field(default=False, metadata={"help": "Push even below --min_top10_overlap."})

    def __post_init__(self):
        if (self.check_queries is None) != (self.check_documents is None):
            raise ValueError("The agreement check needs both --check_queries and --check_documents.")
        if self.min_top10_overlap is not None and self.check_queries is None:
            raise ValueError("--min_top10_overlap needs --check_queries and --check_documents to check on.")
