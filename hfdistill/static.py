"""A 0-layer student's query side as static token vectors: sentence-transformers' `StaticEmbedding` (a lookup and a
mean, no transformer code), for serving queries at the cost of tokenization.

A 0-layer student is its token embeddings, position embeddings and LayerNorm, mean-pooled over the query's tokens
with its special tokens. A static encoder keeps one vector per token and averages the query's tokens alone, so each
token's vector here is the student's output for that token averaged over the positions a query's tokens take, plus
its share of the special tokens' outputs at a typical query length. That is an approximation of the student, not the
student: `recipes/evaluate.py --query_encoder <folder>` measures what it keeps.
"""

import torch

from .configuration_asymmetric import pooling_modes
from .modeling_asymmetric import AsymmetricDualEncoder

# the positions each token's outputs are averaged over, and the query length at which the special tokens' share is
# folded in (half of web queries have 8 tokens or fewer); another pair, closer to the student, kept less of the
# teacher's retrieval quality (docs/results.md)
TOKEN_POSITIONS = 16
TYPICAL_TOKENS = 8


def check_static(model: AsymmetricDualEncoder) -> None:
    """One clear error unless `model`'s student can be served as static token vectors: no layers, mean pooling (the
    side is `export.check_export`'s to check)."""
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
