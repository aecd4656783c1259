"""Arguments of a distillation run: which student, which queries, how to train (HfArgumentParser dataclasses)."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from .configuration_asymmetric import LAYER_STRATEGIES, POOLING_MODES
from .documents import DOCUMENT_INPUTS, check_document_inputs
from .embedding_cache import DEFAULT_CACHE_DIR, EMBEDDING_DTYPES
from .losses import LOSSES
from .run_files import RUN_FILES


@dataclass
class StudentArguments:
    r"""
    Which teacher to distill, and which student to build from it.

    Parameters:
        > Parameters that choose the teacher

        teacher (`str`, *optional*, defaults to `"sentence-transformers/all-MiniLM-L6-v2"`):
            Hub id or local path of the teacher, kept frozen as the document encoder.
        teacher_revision (`str`, *optional*):
            Hub revision of the teacher.
        base_model (`str`, *optional*):
            The teacher's Hub id when `teacher` is a local copy of it: the model card names it as the base model (a
            local path is never published as one).
        pooling (`str`, *optional*):
            Overrides the teacher's sentence-transformers pooling; needed for a teacher without sentence-transformers
            files.
        query_prompt (`str`, *optional*):
            The teacher's query prompt, overriding its `config_sentence_transformers.json`.
        document_prompt (`str`, *optional*):
            The teacher's document prompt, likewise.
        query_prompt_name (`str`, *optional*):
            Picks the teacher's query prompt by its name in that file.
        document_prompt_name (`str`, *optional*):
            Picks the teacher's document prompt by its name in that file.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Allow a teacher (or student model) whose architecture is custom code in its repository.

        > Parameters that choose the student

        student_layers (`list[int]` or `"auto"`, *optional*):
            0-based layers to keep (overrides the strategy), or `auto`: every candidate set of `num_student_layers`
            ranked by how its untrained student agrees with the teacher on the held-out queries, then the best few
            trained briefly. `[]` keeps none: a 0-layer student, the token embeddings, pooling and head trained to
            the same targets (on the command line: `--num_student_layers 0`).
        layer_strategy (`str`, *optional*, defaults to `"top_bottom"`):
            `top_bottom`, `first`, `last` or `uniform`, used when no indices are given.
        num_student_layers (`int`, *optional*, defaults to `2`):
            Number of layers the strategy keeps (0 for a 0-layer student).
        selection_training_steps (`int`, *optional*, defaults to `50`):
            `auto`: steps of the run's recipe each shortlisted candidate trains; the best held-out cosine wins (0:
            the untrained ranking alone).
        selection_shortlist (`int`, *optional*, defaults to `4`):
            `auto`: how many candidates those short runs train.
        student_model (`str`, *optional*):
            A smaller encoder (Hub id or path) whose `student_layers` make the student instead of the teacher's, with
            its own tokenizer and pooling and a Dense map to the teacher's embedding size.
        student_query_prompt (`str`, *optional*):
            The student's query prompt; defaults to the teacher's (to the student model's own with `student_model`).
            `""` trains a prompt-free student on raw queries against the teacher's prompted targets.
        share_token_embeddings (`bool`, *optional*, defaults to `False`):
            The student uses the teacher's token embeddings, frozen, instead of a trainable copy; a saved student
            stores them once and is saved for transformers only.
        student_dropout (`float`, *optional*, defaults to `0.0`):
            Every dropout probability of the student while it trains: it regresses the teacher's exact outputs, and
            dropout only adds noise to that target. A negative value keeps its architecture's own.
    """

    teacher: str = field(
        default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Hub id or local path of the teacher."}
    )
    teacher_revision: str | None = field(default=None, metadata={"help": "Hub revision of the teacher."})
    base_model: str | None = field(
        default=None, metadata={"help": "The teacher's Hub id when --teacher is a local copy (named on the card)."}
    )
    student_layers: list[str] | None = field(  # indices (converted to ints in __post_init__) or `auto`
        default=None,
        metadata={
            "help": "0-based teacher layers to keep, e.g. `0 5` (overrides the strategy; `[]` in a config: none), "
            "or `auto`."
        },
    )
    layer_strategy: str = field(
        default="top_bottom",
        metadata={"help": f"Layer selection when no indices are given: one of {LAYER_STRATEGIES}."},
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
    student_dropout: float = field(
        default=0.0, metadata={"help": "Dropout of the student while it trains (negative: its architecture's own)."}
    )
    student_model: str | None = field(
        default=None,
        metadata={
            "help": "A smaller encoder (Hub id or path) whose layers make the student, with its own tokenizer, "
            "instead of the teacher's layers."
        },
    )

    def __post_init__(self):
        if self.layer_strategy not in LAYER_STRATEGIES:  # `auto` has one spelling: student_layers
            hint = "; automatic selection is `--student_layers auto`" if self.layer_strategy == "auto" else ""
            raise ValueError(f"layer_strategy must be one of {LAYER_STRATEGIES}, got {self.layer_strategy!r}{hint}.")
        if self.student_layers in ("auto", ["auto"]):
            self.student_layers = "auto"
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
        """How the teacher is loaded and read (revision, pooling, prompts), for `from_teacher` and
        `auto_select_layers` alike."""
        prompts = ("query_prompt", "document_prompt", "query_prompt_name", "document_prompt_name")
        return {
            "revision": self.teacher_revision,
            "pooling": self.pooling,
            "trust_remote_code": self.trust_remote_code,
            **{name: getattr(self, name) for name in prompts},
        }

    @property
    def student_kwargs(self) -> dict:
        """How the student is built from the teacher, for `from_teacher` in the recipe and in layer trials."""
        return {
            "student_query_prompt": self.student_query_prompt,
            "share_token_embeddings": self.share_token_embeddings,
            "student_model": self.student_model,
            "student_dropout": self.student_dropout if self.student_dropout >= 0 else None,
            **self.teacher_kwargs,
        }


@dataclass
class QueryDataArguments:
    r"""
    The unlabeled queries a student learns from, and the cache of the teacher's embeddings of them.

    Parameters:
        > Parameters that choose the queries

        train_queries (`str`):
            A local `.tsv[.gz]` (`qid<TAB>text`), `.jsonl[.gz]` or `.txt[.gz]` file, a local dataset folder, or a Hub
            dataset id of unlabeled queries.
        queries_subset (`str`, *optional*):
            Subset (config name) of a Hub dataset.
        queries_split (`str`, *optional*, defaults to `"train"`):
            Split of a Hub dataset.
        queries_column (`str`, *optional*, defaults to `"text"`):
            Text column of a Hub dataset or jsonl file.
        max_train_samples (`int`, *optional*):
            Cap on training queries after deduplication and shuffling.
        num_eval_queries (`int`, *optional*, defaults to `2000`):
            Held-out queries for the evaluation loss and mean cosine.
        split_seed (`int`, *optional*):
            Seed of the shuffle that picks the held-out and capped queries; defaults to the training seed. Fixing it
            repeats a run with another `seed` on the same queries (and cached embeddings).
        joined_query_fraction (`float`, *optional*, defaults to `0.1`):
            Adds this fraction times the training queries as examples of training queries joined into one longer
            text (held-out queries stay real); 0 is off. Search queries are short, so without them a student aligns
            long inputs (whole arguments, paragraphs used as queries) worst.
        joined_query_max (`int`, *optional*, defaults to `8`):
            Each joined example joins 2 to this many queries, uniformly drawn.

        > Parameters that add the documents of the user's own index

        train_documents (`list[str]`, *optional*):
            The documents the student's queries will search (a BEIR `corpus.jsonl[.gz]`, any file `train_queries`
            takes, a local dataset folder or a Hub dataset; several for an index of several corpora). Texts cut from
            them at query length are aligned to the teacher's query embeddings beside the queries: the student
            learns the index's own language and vocabulary.
        documents_subset (`str`, *optional*):
            Subset (config name) of a Hub dataset of documents.
        documents_split (`str`, *optional*, defaults to `"train"`):
            Split of a Hub dataset of documents.
        documents_column (`str`, *optional*, defaults to `"text"`):
            Text column of the documents.
        documents_title_column (`str`, *optional*, defaults to `"title"`):
            Title column of the documents, where they have one (read for `titles`).
        document_fraction (`float`, *optional*, defaults to `0.4`):
            Adds this fraction times the training queries as texts cut from the documents (fewer where a small
            corpus holds fewer distinct ones).
        document_inputs (`list[str]`, *optional*, defaults to `["sentences", "spans"]`):
            What is cut from the documents: `sentences`, `spans` of tokens, `titles`; each text is one of them, drawn
            at random.
        document_span_tokens (`list[int]`, *optional*, defaults to `[4, 24]`):
            The shortest and longest span, in the student's tokens.
        train_languages (`list[str]`, *optional*):
            The languages of the training text, queries and documents (ISO 639 codes such as `en de`). The model
            card lists them, with the languages of the tasks the student was evaluated on, and no others.

        > Parameters that control the teacher pass

        embedding_cache_dir (`str`, *optional*, defaults to `"~/.cache/hfdistill/embeddings"`):
            Where teacher embeddings are cached, keyed by teacher, prompt, precision, dtype and texts.
        teacher_batch_size (`int`, *optional*, defaults to `64`):
            Batch size of the teacher's encoding.
        embedding_dtype (`str`, *optional*, defaults to `"float32"`):
            How teacher embeddings are stored in the cache; `float16` halves the file.
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
    embedding_cache_dir: str = field(default=DEFAULT_CACHE_DIR, metadata={"help": "Cache of teacher embeddings."})
    teacher_batch_size: int = field(default=64, metadata={"help": "Batch size of the teacher's encoding."})
    embedding_dtype: str = field(
        default="float32",
        metadata={"help": f"How teacher embeddings are stored in the cache: {tuple(EMBEDDING_DTYPES)}."},
    )
    joined_query_fraction: float = field(
        default=0.1, metadata={"help": "Add this fraction x the training queries as joined ones (0 = off)."}
    )
    joined_query_max: int = field(
        default=8, metadata={"help": "Queries per joined example: 2 to this many, uniformly drawn (2 = pairs)."}
    )

    train_documents: list[str] | None = field(
        default=None,
        metadata={
            "help": "Documents of the index the student will search (BEIR corpus.jsonl, any query format, "
            "or a Hub dataset): texts cut from them are aligned beside the queries."
        },
    )
    documents_subset: str | None = field(default=None, metadata={"help": "Subset of a Hub dataset of documents."})
    documents_split: str = field(default="train", metadata={"help": "Split of a Hub dataset of documents."})
    documents_column: str = field(default="text", metadata={"help": "Text column of the documents."})
    documents_title_column: str = field(default="title", metadata={"help": "Title column of the documents."})
    document_fraction: float = field(
        default=0.4, metadata={"help": "Add this fraction x the training queries as texts cut from the documents."}
    )
    document_inputs: list[str] = field(
        default_factory=lambda: ["sentences", "spans"],
        metadata={"help": f"What is cut from the documents: some of {DOCUMENT_INPUTS}."},
    )
    document_span_tokens: list[int] = field(
        default_factory=lambda: [4, 24], metadata={"help": "Shortest and longest document span, in tokens."}
    )
    train_languages: list[str] | None = field(
        default=None,
        metadata={"help": "Languages of the queries and documents (e.g. `en de`), listed on the model card."},
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
        if not 0 < self.document_fraction < float("inf"):
            raise ValueError(f"document_fraction must be a number > 0, got {self.document_fraction}.")
        check_document_inputs(self.document_inputs, self.document_span_tokens)

    def split_seed_for(self, seed: int) -> int:
        """The seed of the held-out/train shuffle and the joined examples: `split_seed`, else the training seed."""
        return seed if self.split_seed is None else self.split_seed


@dataclass
class EmbeddingAlignmentConfig(TrainingArguments):
    r"""
    Configuration class for the [`EmbeddingAlignmentTrainer`].

    This class includes only the parameters that are specific to embedding alignment. For a full list of training
    arguments, please refer to the [`~transformers.TrainingArguments`] documentation. Note that default values in this
    class may differ from those in [`~transformers.TrainingArguments`].

    Parameters:
        > Parameters that control the loss

        loss (`str`, *optional*, defaults to `"cosine"`):
            Alignment loss between student and teacher query embeddings: `cosine` (1 - cosine) or `mse` (the
            paper's).

        > Parameters that control batching

        length_chunk_cost (`int`, *optional*, defaults to `128`):
            Each training batch is encoded in chunks of queries of similar length, each padded only to its own
            longest query: the random batch's loss and gradient at a fraction of its padding. A chunk costs this many
            tokens of overhead (an encoder call); a large value encodes each batch as one padded batch.

        > Parameters that control the output folder and evaluation

        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Allow writing into an output directory that already holds a run.
        retrieval_eval_dir (`str`, *optional*):
            A BEIR-format folder (`corpus.jsonl[.gz]`, `queries.jsonl`, `qrels/test.tsv`); every evaluation then also
            logs the student's `eval_ndcg_at_10` and `eval_retention`, usable as `metric_for_best_model`.
        retrieval_cache_dir (`str`, *optional*, defaults to `"~/.cache/hfdistill/embeddings"`):
            Where the teacher's document embeddings for that folder are cached.

    > [!NOTE]
    > These parameters have default values different from [`~transformers.TrainingArguments`]: the best recipe we
    > measured (docs/results.md); the paper's is `recipes/configs/paper-msmarco-bert-base-2L.yaml`.
    > - `learning_rate`: Defaults to `1e-3` instead of `5e-5`.
    > - `warmup_steps`: Defaults to `0.1` (10% of the steps) instead of `0`.
    > - `num_train_epochs`: Defaults to `3.0`, as in [`~transformers.TrainingArguments`].
    > - `per_device_train_batch_size`: Defaults to `128` instead of `8`.
    > - `per_device_eval_batch_size`: Defaults to `256` instead of `8`.
    > - `logging_steps`: Defaults to `50` instead of `500`.
    > - `remove_unused_columns`: Defaults to `False`: the collator needs the teacher embeddings.
    > - `hub_model_id`: with `push_to_hub`, named after the output folder before the run checks Hub access.
    """

    loss: str = field(default="cosine", metadata={"help": f"Alignment loss: {LOSSES}."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output directory that already holds a run."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=256, metadata={"help": "Evaluation batch size per device."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Linear warmup steps (or ratio if < 1)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Training epochs."})
    logging_steps: float = field(default=50, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator needs the teacher embeddings."}
    )
    length_chunk_cost: int = field(
        default=128,
        metadata={
            "help": "Encode each batch in chunks of similar-length queries, each padded to its own longest; a chunk "
            "costs this many tokens of overhead (a large value: one padded batch)."
        },
    )
    retrieval_eval_dir: str | None = field(
        default=None,
        metadata={"help": "BEIR-format folder: log eval_ndcg_at_10 and eval_retention at every evaluation."},
    )
    retrieval_cache_dir: str = field(
        default=DEFAULT_CACHE_DIR, metadata={"help": "Cache of the teacher's retrieval embeddings."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {LOSSES}.")
        if not 0 < self.learning_rate < math.inf:
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}.")
        if not 0 <= self.num_train_epochs < math.inf or not 0 <= self.warmup_steps < math.inf:
            raise ValueError(
                "num_train_epochs and warmup_steps must be finite numbers >= 0, got "
                f"{self.num_train_epochs} and {self.warmup_steps}."
            )
        if self.max_steps == 0 or self.max_steps < 0 and self.num_train_epochs == 0:
            raise ValueError(
                f"max_steps={self.max_steps} with num_train_epochs={self.num_train_epochs} trains no step: set one "
                "of them above 0."
            )
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.length_chunk_cost < 0:
            raise ValueError(f"length_chunk_cost must be >= 0 (tokens), got {self.length_chunk_cost}.")
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
        elif self.resume_from_checkpoint in ("false", "False", "no", ""):
            self.resume_from_checkpoint = None
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
        check_queries (`list[str]`, *optional*): query sets to check on, each a local file or a Hub dataset (as
            `train_queries`): one per language or domain the student will serve; each set is reported apart.
        check_documents (`list[str]`, *optional*): documents to rank them against, likewise: one set for all query
            sets, or one per query set.
        check_column (`str`, *optional*, defaults to `"text"`): the text column of a Hub dataset or jsonl file.
        check_max_queries (`int`, *optional*, defaults to `1000`): queries used, the first of the file.
        check_max_documents (`int`, *optional*, defaults to `10000`): documents used, likewise.
        min_top10_overlap (`float`, *optional*): refuse the push below this mean share of the teacher's top 10
            documents that the student also ranks in its top 10.
        push_anyway (`bool`, *optional*, defaults to `False`): push even below `min_top10_overlap`.
    """

    check_queries: list[str] | None = field(
        default=None, metadata={"help": "Query sets to check agreement on (files or Hub datasets), reported apart."}
    )
    check_documents: list[str] | None = field(
        default=None, metadata={"help": "Documents to rank them against: one set, or one per query set."}
    )
    check_column: str = field(default="text", metadata={"help": "Text column of a Hub dataset or jsonl file."})
    check_max_queries: int = field(default=1000, metadata={"help": "Queries used (the first of the file)."})
    check_max_documents: int = field(default=10000, metadata={"help": "Documents used (the first of the file)."})
    min_top10_overlap: float | None = field(
        default=None, metadata={"help": "Refuse the push below this top-10 overlap with the teacher (0 to 1)."}
    )
    push_anyway: bool = field(default=False, metadata={"help": "Push even below --min_top10_overlap."})

    def __post_init__(self):
        for name in ("check_queries", "check_documents"):  # a single path (the Python API) is one set
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if (self.check_queries is None) != (self.check_documents is None):
            raise ValueError("The agreement check needs both --check_queries and --check_documents.")
        if self.check_queries and len(self.check_documents) not in (1, len(self.check_queries)):
            raise ValueError(
                f"--check_documents takes one document set, or one per query set "
                f"({len(self.check_queries)}); got {len(self.check_documents)}."
            )
        if self.min_top10_overlap is not None and not 0 <= self.min_top10_overlap <= 1:
            raise ValueError(f"min_top10_overlap must be a share between 0 and 1, got {self.min_top10_overlap}.")
        if self.min_top10_overlap is not None and self.check_queries is None:
            raise ValueError("--min_top10_overlap needs --check_queries and --check_documents to check on.")
