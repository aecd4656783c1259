"""The peer for the 0-layer student: model2vec's own recipe, distillation of the teacher's vocabulary
(`model2vec.distill`, no PCA, so the vectors keep the teacher's axes) then `StaticModelForSimilarity.fit` of those
static vectors to the teacher's vectors of the training queries (cosine loss, model2vec's training loop), on the same
queries and teacher vectors as `recipes/distill.py` (research.baselines.teacher_targets writes them).

model2vec[distill] pins transformers < 5.4, so this runs in an environment of its own:

    pip install torch==2.13.0 "model2vec[distill,train]" "sentence-transformers>=6.0"
    HF_HUB_OFFLINE=1 python -m research.baselines.model2vec_recipe \
        --teacher hfdistill-offline/multilingual-e5-small-q4 --targets targets.pt \
        --num_train_epochs 3 --output_dir runs/model2vec-fit

Saves `fitted/` and `distilled/` (before the fit), sentence-transformers models (`StaticEmbedding`, `Normalize`) that
`recipes/evaluate.py --query_encoder` scores against the teacher's documents, and `peer_record.json` (training time and
throughput).
"""

import argparse
import json
import time
from pathlib import Path

import torch
from model2vec.distill import distill
from model2vec.train import StaticModelForSimilarity
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="Teacher path or Hub id.")
    parser.add_argument("--targets", required=True, help="research.baselines.teacher_targets' file.")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="model2vec's default.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_train_epochs", type=int, default=3)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    stored = torch.load(args.targets, weights_only=True)
    start = time.perf_counter()
    static = distill(args.teacher, pca_dims=None, quantize_to="float32")
    distill_runtime = time.perf_counter() - start
    model = StaticModelForSimilarity.from_static_model(model=static, n_layers=0)
    start = time.perf_counter()
    epochs = args.num_train_epochs
    model.fit(stored["texts"], stored["targets"], learning_rate=args.learning_rate, batch_size=args.batch_size,
              min_epochs=epochs, max_epochs=epochs, early_stopping_patience=None)  # fmt: skip
    train_runtime = time.perf_counter() - start
    out = Path(args.output_dir)
    for name, fitted in (("distilled", static), ("fitted", model.to_static_model())):  # before and after the fit
        fitted.save_pretrained(str(out / name / "model2vec"))
        modules = [StaticEmbedding.from_model2vec(str(out / name / "model2vec")), Normalize()]
        SentenceTransformer(modules=modules).save(str(out / name))
    record = {
        "recipe": "model2vec distill + StaticModelForSimilarity.fit",
        "teacher": args.teacher,
        "num_train_queries": len(stored["texts"]),
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "num_train_epochs": args.num_train_epochs,
        "distill_runtime": distill_runtime,
        "train_runtime": train_runtime,
        "train_queries_per_second": len(stored["texts"]) * args.num_train_epochs / train_runtime,
        "threads": torch.get_num_threads(),
    }
    (out / "peer_record.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
