"""Shared fixtures: tiny random teachers saved as sentence-transformers repos, and the real MiniLM teacher."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertTokenizer,
    DistilBertConfig,
    Gemma3TextConfig,
    ModernBertConfig,
    MPNetConfig,
    MPNetTokenizer,
    Qwen3Config,
    XLMRobertaConfig,
)

WORDS = (
    "what is dense retrieval the a of query document encoder model fast small big search index how to why "
    "does do cat dog sun moon water fire tree city river car book music science health food history"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def write_teacher(path: Path, kind: str = "bert", pooling: str | None = "mean", normalize: bool = True) -> str:
    """Save a tiny randomly initialised teacher (+ tokenizer, + sentence-transformers head files) to `path`."""
    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    sizes = dict(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    if kind == "bert":
        config, tokenizer = BertConfig(**sizes), BertTokenizer(str(vocab))
    else:
        config = MPNetConfig(**sizes, pad_token_id=0)
        tokens = dict(
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            bos_token="[CLS]",
            eos_token="[SEP]",
        )
        tokenizer = MPNetTokenizer(str(vocab), **tokens)
    AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    vocab.unlink()
    if pooling is not None:
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if normalize:
            modules.append(
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            )
        (path / "modules.json").write_text(json.dumps(modules))
        (path / "1_Pooling").mkdir(exist_ok=True)
        (path / "1_Pooling" / "config.json").write_text(
            json.dumps(
                {
                    "word_embedding_dimension": 32,
                    "pooling_mode_cls_token": pooling == "cls",
                    "pooling_mode_mean_tokens": pooling == "mean",
                    "pooling_mode_max_tokens": pooling == "max",
                }
            )
        )
        (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48, "do_lower_case": False}))
    return str(path)


E5_PROMPTS = {"query": "query: ", "document": "passage: "}
QWEN3_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages\nQuery:", "document": ""}
ALTERNATING = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
SIZES = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37)
DECODER_SIZES = dict(**SIZES, num_key_value_heads=2, head_dim=8, sliding_window=4, layer_types=ALTERNATING)
FAMILIES = {  # tiny configs of each architecture family (small sliding windows, so per-layer attention types matter)
    "bert": lambda vocab: BertConfig(vocab_size=vocab, max_position_embeddings=64, **SIZES),
    "xlm-roberta": lambda vocab: XLMRobertaConfig(
        vocab_size=vocab, max_position_embeddings=64, pad_token_id=0, **SIZES
    ),
    "distilbert": lambda vocab: DistilBertConfig(vocab_size=vocab, dim=32, n_layers=4, n_heads=4, hidden_dim=37),
    "modernbert": lambda vocab: ModernBertConfig(
        vocab_size=vocab, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0, bos_token_id=2,
        eos_token_id=3, cls_token_id=2, sep_token_id=3, **SIZES
    ),
    "qwen3": lambda vocab: Qwen3Config(vocab_size=vocab, use_sliding_window=True, pad_token_id=0, **DECODER_SIZES),
    "gemma3": lambda vocab: Gemma3TextConfig(
        vocab_size=vocab, use_bidirectional_attention=True, pad_token_id=0, **DECODER_SIZES
    ),
}  # fmt: skip


def write_st_teacher(
    path: Path,
    family: str = "bert",
    pooling: str = "mean",
    dense: tuple[int, ...] = (),
    normalize: bool = True,
    prompts: dict[str, str] | None = None,
    num_layers: int = 4,
    **st_kwargs,
) -> str:
    """Save a tiny random teacher of `family` as sentence-transformers saves a model: Transformer, Pooling, a Dense
    layer per size in `dense`, Normalize, prompts; `num_layers` deep. Decoders pad on the left, as Qwen3-Embedding
    does."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(0)
    backbone = path / "backbone"
    backbone.mkdir(parents=True, exist_ok=True)
    vocab = backbone / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab), padding_side="left" if family in ("qwen3", "gemma3") else "right")
    config = FAMILIES[family](len(SPECIAL) + len(WORDS))
    if num_layers != 4:
        config.num_hidden_layers = num_layers
        if getattr(config, "layer_types", None):
            config.layer_types = [ALTERNATING[i % 2] for i in range(num_layers)]
    AutoModel.from_config(config).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    modules = [Transformer(str(backbone), max_seq_length=48), Pooling(32, pooling_mode=pooling)]
    for size in dense:
        modules.append(Dense(modules[-1].get_embedding_dimension(), size, activation_function=torch.nn.Tanh()))
    model = SentenceTransformer(modules=modules + ([Normalize()] if normalize else []), prompts=prompts, **st_kwargs)
    model.save(str(path / "teacher"))
    return str(path / "teacher")


GEMMA_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}
TEACHERS = {  # (family, pooling, Dense sizes, prompts): every pooling mode and head shape on some family
    "bert-e5-prompts": ("bert", "mean", (), E5_PROMPTS),
    "bert-dense": ("bert", "cls", (16,), None),
    "bert-two-dense-max": ("bert", "max", (24, 16), None),
    "xlm-roberta-weightedmean": ("xlm-roberta", "weightedmean", (), E5_PROMPTS),
    "distilbert-mean-sqrt-len": ("distilbert", "mean_sqrt_len_tokens", (), None),
    "modernbert": ("modernbert", "mean", (), {"query": "search_query: ", "document": "search_document: "}),
    "qwen3-lasttoken-instruction": ("qwen3", "lasttoken", (), QWEN3_PROMPTS),
    "gemma3-dense": ("gemma3", "mean", (48, 32), GEMMA_PROMPTS),
}  # fmt: skip


@pytest.fixture(scope="session", params=sorted(TEACHERS))
def family_teacher(request, tmp_path_factory) -> tuple[str, str]:
    """(name, path) of a tiny sentence-transformers teacher of each architecture family and head in `TEACHERS`."""
    family, pooling, dense, prompts = TEACHERS[request.param]
    return request.param, write_st_teacher(
        tmp_path_factory.mktemp(request.param), family, pooling, dense, prompts=prompts
    )


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> str:
    """Path of a tiny 4-layer BERT teacher with mean pooling and normalization."""
    return write_teacher(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_mpnet_teacher(tmp_path_factory) -> str:
    return write_teacher(tmp_path_factory.mktemp("tiny-mpnet"), kind="mpnet", pooling="cls", normalize=False)


@pytest.fixture(scope="session")
def _tiny_student(tiny_teacher):
    from hfdistill import from_teacher

    return from_teacher(tiny_teacher, student_layers=[0, 3])


@pytest.fixture
def tiny_student(_tiny_student):
    """A [0, 3] student of the tiny BERT teacher (a fresh deep copy per test)."""
    return copy.deepcopy(_tiny_student)


@pytest.fixture
def queries() -> list[str]:
    import random

    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))) for _ in range(300)]


@pytest.fixture(scope="session")
def minilm() -> str:
    """The real all-MiniLM-L6-v2 from the Hub cache (installed by ../shared/tools/install-offline-teachers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(MINILM, "config.json"), str):
        pytest.fail(f"{MINILM} is not in the Hub cache: run `bash ../shared/tools/install-offline-teachers`.")
    return MINILM


@pytest.fixture(scope="session")
def real_queries() -> list[str]:
    from hfdistill.data import load_queries

    return load_queries(str(SHARED / "data" / "queries" / "train_queries.tsv.gz"))


ROOT = Path(__file__).resolve().parents[1]
SAVED_FILES = {  # the root of a saved student: transformers' config, code and tokenizer; sentence-transformers' files
    "config.json",
    "configuration_asymmetric.py",
    "modeling_asymmetric.py",
    "persistence.py",
    "tokenizer.json",
    "modules.json",
    "router_config.json",
    "config_sentence_transformers.json",
}


def run_script(args: list[str], env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root, as a user would, and fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def run_in_process(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """`run_script(args)` without a new interpreter: the script (`path.py ...` or `-m module ...`) runs in this process
    from the repository root, and its exit status and what it printed come back the same way (an uncaught exception:
    status 1 and its traceback). It saves the start-up and imports, seconds a call; scripts that change the process
    (its threads, its environment) keep `run_script`."""
    import runpy
    import traceback
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    target, *argv = args[1:] if args[0] == "-m" else args
    stdout, stderr, saved, status, message = StringIO(), StringIO(), (sys.argv, os.getcwd()), 0, None
    sys.argv = [target, *argv]
    os.chdir(ROOT)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                if args[0] == "-m":
                    runpy.run_module(target, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(target, run_name="__main__")
            except SystemExit as exited:  # as the interpreter ends: a message goes to stderr with status 1
                status = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
                if isinstance(exited.code, str):
                    message = exited.code
                    print(message, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                status = 1
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
    result = subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())
    result.exit_message = message  # the message the run exited with (stderr also holds what the process logged)
    if check:
        assert status == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def run_recipe_in_process(recipe: str, args: list[str]) -> str:
    """`python recipes/<recipe>.py <args>` run in this process (`run_in_process`) for a run that must be refused: it
    must exit with status 1 and a message, which is returned (the user's one line, when it is one)."""
    result = run_in_process([f"recipes/{recipe}.py", *args], check=False)
    assert result.returncode == 1 and result.exit_message, result.stdout[-2000:] + result.stderr[-4000:]
    return result.exit_message


def tiny_distill_args(
    teacher: str, queries: list[str], tmp_path: Path, batch_size: int, layers: tuple[str, ...] = ("0", "3")
) -> list[str]:
    """Arguments of recipes/distill.py for a few steps on a tiny teacher (add --max_steps, --output_dir, ...);
    `layers=()` leaves the layer choice to the caller (e.g. `auto`)."""
    query_file = tmp_path / "queries.tsv"
    query_file.write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    layer_args = ["--student_layers", *layers] if layers else []
    return ["recipes/distill.py", "--teacher", teacher, *layer_args, "--train_queries",
            str(query_file), "--num_eval_queries", "40", "--per_device_train_batch_size", str(batch_size),
            "--warmup_steps", "0", "--embedding_cache_dir", str(tmp_path / "cache"),
            "--report_to", "none"]  # fmt: skip
