"""Check that an exported query encoder loads with sentence-transformers' ONNX backend and gives hfdistill's numbers.

`SentenceTransformer(folder, backend="onnx", model_kwargs={"file_name": ...})` needs optimum-onnx, which supports no
transformers 5 release yet (huggingface/optimum-onnx#114), so the check runs in two environments:

1. `reference`, where hfdistill runs: every ONNX file of the folder through `OnnxQueryEncoder`, and the folder's torch
   weights through `SentenceTransformer(folder)`, on the same queries; saved to one `.npz`.

       python -m research.sentence_transformers_onnx reference --export_dir out/minilm-2L-int8 \
           --queries queries.dev.small.tsv.gz --output out/st-onnx.npz

2. `check`, where sentence-transformers' ONNX backend runs today (its 5.x line), needing no hfdistill:

       python -m venv st5 && . st5/bin/activate
       pip install torch "transformers<4.58" "sentence-transformers<6" "optimum-onnx[onnxruntime]"
       python -m research.sentence_transformers_onnx check --export_dir out/minilm-2L-int8 --reference out/st-onnx.npz

   prints, for each ONNX file, the largest difference from `OnnxQueryEncoder` on that file and the lowest cosine to
   the torch weights.
"""

import argparse
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer


def onnx_files(export_dir: str) -> list[str]:
    return sorted(f"onnx/{path.name}" for path in Path(export_dir, "onnx").glob("*.onnx"))


def reference(args: argparse.Namespace) -> None:
    from hfdistill.data import load_queries
    from hfdistill.export import OnnxQueryEncoder

    queries = load_queries(args.queries)[: args.limit]
    arrays = {"queries": np.array(queries), "torch": SentenceTransformer(args.export_dir).encode(queries)}
    for file_name in onnx_files(args.export_dir):
        arrays[file_name] = OnnxQueryEncoder(args.export_dir, file_name=file_name).encode_queries(queries).numpy()
    np.savez(args.output, **arrays)
    print(f"{args.output}: {len(queries)} queries, torch and {onnx_files(args.export_dir)}")


def check(args: argparse.Namespace) -> None:
    saved = np.load(args.reference)
    queries = saved["queries"].tolist()
    difference = np.abs(SentenceTransformer(args.export_dir).encode(queries) - saved["torch"]).max()
    print(f"torch weights, this environment vs hfdistill's: max |difference| {difference:.2e}")
    for file_name in onnx_files(args.export_dir):
        model = SentenceTransformer(args.export_dir, backend="onnx", model_kwargs={"file_name": file_name})
        embeddings = model.encode(queries)
        cosine = (embeddings * saved["torch"]).sum(1) / np.linalg.norm(embeddings, axis=1)
        cosine /= np.linalg.norm(saved["torch"], axis=1)
        print(
            f"{file_name} via {type(model[0].auto_model).__name__}: max |difference| from OnnxQueryEncoder "
            f"{np.abs(embeddings - saved[file_name]).max():.2e}, lowest cosine to torch {cosine.min():.4f} "
            f"(mean {cosine.mean():.4f}), {len(queries)} queries"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("reference", help="Where hfdistill runs: the numbers to match.")
    first.add_argument("--export_dir", required=True, help="A folder written by recipes/export.py.")
    first.add_argument("--queries", required=True, help="Query file (.tsv/.jsonl/.txt[.gz]).")
    first.add_argument("--limit", type=int, default=2000, help="How many of its queries.")
    first.add_argument("--output", required=True, help="The .npz written.")
    second = commands.add_parser("check", help="Where sentence-transformers' ONNX backend runs: load and compare.")
    second.add_argument("--export_dir", required=True, help="The same folder.")
    second.add_argument("--reference", required=True, help="The .npz written by `reference`.")
    args = parser.parse_args()
    (reference if args.command == "reference" else check)(args)


if __name__ == "__main__":
    main()
