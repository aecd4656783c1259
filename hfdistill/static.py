"""A 0-layer student's query side as static token vectors: sentence-transformers' `StaticEmbedding` (a lookup and a
mean, no transformer code), or model2vec's `StaticModel` (the same lookup and mean with no model code around it), for
serving queries at the cost of tokenization.

A 0-layer student is its token embeddings, position embeddings and LayerNorm, mean-pooled over the query's tokens
with its special tokens. A static encoder keeps one vector per token and averages the query's tokens alone, so each
token's vector here is the student's output for that token averaged over the positions a query's tokens take, plus
its share of the special tokens' outputs at a typical query length. That is an approximation of the student, not the
student: `recipes/evaluate.py --query_encoder <folder>` measures what it keeps.
"""

import torch
from sentence_transformers.sentence_transformer.modules import Dense, Normalize
from torch import nn

from .configuration_asymmetric import pooling_modes
from .modeling_asymmetric import AsymmetricDualEncoder

# the positions each token's outputs are averaged over, and the query length at which the special tokens' share is
# folded in (half of web queries have 8 tokens or fewer); another pair, closer to the student, kept less of the
# teacher's retrieval quality (docs/results.md)
TOKEN_POSITIONS = 16
TYPICAL_TOKENS = 8


def check_static(model: AsymmetricDualEncoder, backend: str = "static") -> None:
    """One clear error unless `model`'s student can be served as static token vectors: no layers, mean pooling (the
    side is `export.check_export`'s to check); for `backend="model2vec"` also no query prompt (model2vec reads queries
    as given) and a head model2vec can hold after the mean (linear `Dense` maps, then `Normalize` or nothing)."""
    if model.config.student_layers:
        raise ValueError(
            f"A static query encoder needs a 0-layer student (--student_layers []), this one keeps layers "
            f"{list(model.config.student_layers)}: its tokens see one another, which a lookup cannot."
        )
    head = model.config.student_head or model.config.head
    if not head or head[0]["type"] != "Pooling" or pooling_modes(head[0]["config"]) != ["mean"]:
        raise ValueError("A static query encoder needs a student with mean pooling: a lookup and a mean.")
    if not model.query_tokenizer.is_fast:
        raise ValueError("A static query encoder needs a fast (Rust) tokenizer, as sentence-transformers' does.")
    if backend != "model2vec":
        return
    if model.config.student_prompt:
        raise ValueError(
            f"model2vec reads queries as given, and this student reads them after its prompt "
            f'{model.config.student_prompt!r}: export a prompt-free student (--student_query_prompt "") or use '
            "--backend static, which keeps the prompt."
        )
    head = list(model.query_head)[1:]
    if head and isinstance(head[-1], Normalize):
        head = head[:-1]
    if not all(isinstance(m, Dense) and isinstance(m.activation_function, nn.Identity) for m in head):
        raise ValueError(
            "model2vec holds token vectors and a normalization; this student's head after its mean has more (a "
            "Dense with an activation, which a mean of vectors cannot take in): use --backend static."
        )


@torch.no_grad()  # the vectors become a trainable Parameter: not inference tensors
def static_token_vectors(
    model: AsymmetricDualEncoder,
    positions: int = TOKEN_POSITIONS,
    typical_tokens: int | None = TYPICAL_TOKENS,
    batch_size: int = 2048,
) -> torch.Tensor:
    """`(vocabulary, hidden)`: each token's 0-layer student output, averaged over positions 1..`positions`, plus the
    student's outputs of its special tokens (`[CLS]`, `[SEP]`) divided by `typical_tokens` (`None`: left out); a
    query's mean of these vectors points where the student's mean over the query and its special tokens points, for
    a query of that length (exactly where positions do not matter)."""
    check_static(model)
    frame = model.query_tokenizer("")["input_ids"]  # the special tokens around any query: [CLS], [SEP] or none
    head, tail = frame[:1], frame[1:]  # token id lists
    encoder = model.query_encoder.eval()
    vocabulary = encoder.get_input_embeddings().num_embeddings
    vectors = []
    for start in range(0, vocabulary, batch_size):
        ids = torch.arange(start, min(start + batch_size, vocabulary)).unsqueeze(1).expand(-1, positions)
        rows = ids.shape[0]
        input_ids = torch.cat([torch.tensor(head).expand(rows, -1), ids, torch.tensor(tail).expand(rows, -1)], 1)
        states = encoder(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
        tokens = states[:, len(head) : len(head) + positions].mean(1)
        specials = torch.cat([states[:, : len(head)], states[:, len(head) + positions :]], dim=1).sum(1)
        vectors.append(tokens + specials / typical_tokens if typical_tokens else tokens)
    return torch.cat(vectors).float()


def static_sentence_transformer(
    model: AsymmetricDualEncoder, positions: int = TOKEN_POSITIONS, typical_tokens: int | None = TYPICAL_TOKENS
):
    """The student's query side as a `SentenceTransformer`: `StaticEmbedding` of `static_token_vectors` (made with
    `positions` and `typical_tokens`), then the student's head after its pooling (a `Dense` map, normalization), with
    its query prompt."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    model = model.to("cpu")
    vectors = static_token_vectors(model, positions, typical_tokens)  # checks the student first
    static = StaticEmbedding(model.query_tokenizer, embedding_weights=vectors)
    prompt = model.config.student_prompt
    return SentenceTransformer(
        modules=[static, *list(model.query_head)[1:]],  # the student's own Dense and Normalize, after its pooling
        similarity_fn_name=model.config.similarity,
        prompts={"query": prompt},
        default_prompt_name="query" if prompt else None,
        device="cpu",
    )


MODEL2VEC_HELP = "pip install 'hfdistill[static]' (model2vec)"


def model2vec_model(
    model: AsymmetricDualEncoder, positions: int = TOKEN_POSITIONS, typical_tokens: int | None = TYPICAL_TOKENS
):
    """The student's query side as a model2vec `StaticModel`: `static_token_vectors` with the student's head after
    pooling folded in (a `Dense` map without activation is linear, so it maps each token's vector and the mean is
    unchanged; a final `Normalize` is model2vec's `normalize`). A `StaticModel` reads queries as given, with no
    prompt, and leaves out the tokens its tokenizer cannot read (`<unk>`); students it would serve otherwise are
    refused (`check_static`)."""
    try:
        from model2vec import StaticModel
    except ImportError:
        raise ImportError(f"A model2vec query encoder needs model2vec: {MODEL2VEC_HELP}.") from None
    check_static(model, "model2vec")
    model = model.to("cpu")
    tokenizer = model.query_tokenizer.backend_tokenizer
    # one vector per token the tokenizer has: embedding matrices are often padded past it (e5: 250,037 rows, 250,002)
    vectors = static_token_vectors(model, positions, typical_tokens)[: tokenizer.get_vocab_size()]
    head = list(model.query_head)[1:]  # after the pooling: linear Dense maps, then Normalize or nothing
    with torch.no_grad():
        for module in head:
            vectors = module.linear(vectors) if isinstance(module, Dense) else vectors
    return StaticModel(
        vectors.numpy(),
        tokenizer,
        config={"model_type": "model2vec", "architectures": ["StaticModel"], "hidden_dim": vectors.shape[1]},
        normalize=bool(head) and isinstance(head[-1], Normalize),
        base_model_name=model.config.teacher_name_or_path,
        max_length=model.config.max_length,
    )
