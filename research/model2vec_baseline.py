"""A training-free baseline for the 0-layer student: model2vec's distillation of the teacher into static token vectors.

model2vec embeds every token of the teacher's vocabulary with the teacher and weights it by its frequency (SIF); a
query is the mean of its tokens' vectors. No training data. PCA is off, so the vectors keep the teacher's dimension and
axes, and are compared with the teacher's document embeddings as they are. Saved as a sentence-transformers model
(`StaticEmbedding`, then `Normalize`), which `recipes/evaluate.py --query_encoder` and
`recipes/benchmark.py --query_encoders` score against the teacher.

model2vec[distill] pins transformers below 5.4, so run this where it installs, e.g. a virtual environment of its own:

    pip install "model2vec[distill]" sentence-transformers
    python -m research.model2vec_baseline --teacher sentence-transformers/all-MiniLM-L6-v2 --output_dir runs/model2vec
"""

import argparse

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="sentence-transformers/all-MiniLM-L6-v2", help="Teacher path or Hub id.")
    parser.add_argument("--output_dir", required=True, help="Where the sentence-transformers model is saved.")
    args = parser.parse_args()
    static = StaticEmbedding.from_distillation(args.teacher, pca_dims=None, quantize_to="float32")
    SentenceTransformer(modules=[static, Normalize()]).save(args.output_dir)
    print(f"{args.output_dir}: {static.get_embedding_dimension()}-d static vectors of {args.teacher}")


if __name__ == "__main__":
    main()
