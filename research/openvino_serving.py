"""A saved student served by sentence-transformers' OpenVINO backend: agreement with PyTorch and speed, side by side.

The student folder loads with `SentenceTransformer(path, backend="openvino")`: each route's encoder is exported to
OpenVINO as it loads. optimum-intel 2.2.0 caps transformers at 5.5.x while hfdistill needs transformers >= 5.20, so
this runs in an environment of its own with sentence-transformers alone (no hfdistill import):

    python -m venv ov && ov/bin/pip install torch==2.13.0 "optimum-intel[openvino]==2.2.0" "transformers<=5.5.99" \
        "sentence-transformers>=6.0" datasets
    ov/bin/python -m research.openvino_serving --model out/e5-small-2L --queries queries.dev.small.tsv.gz \
        --agreement_queries scifact/queries.jsonl msmarco-sub5k/queries.jsonl --calibration_queries train.tsv.gz \
        --threads 2 --output_dir out/e5-small-2L/openvino

It reports, for the query encoders `student` (torch), `student-openvino` (fp32), `student-openvino-int8` (the query
route statically quantized by optimum-intel's `OVQuantizer` on `--calibration_queries`) and `teacher-openvino` (the
teacher's own query encoding served by OpenVINO, the peer without a student):
- agreement with the torch student on `--agreement_queries` (mean and minimum cosine), and their embeddings, which
  `research.precomputed_queries` scores against the teacher's documents (retention) where hfdistill installs;
- queries/s at each batch size (median of `--repeats` alternating passes) and the speed-up against the fp32 torch
  teacher (the folder's document route with the teacher's query prompt), timed in the same run.
"""

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

QUERY_EMBEDDINGS = "query_embeddings.pt"  # scored against the teacher's documents by research.precomputed_queries


def read_queries(path: str, limit: int | None = None) -> list[str]:
    """Query texts of a .tsv (id, text), .jsonl (`text`) or .txt file, gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if ".jsonl" in path:
                texts.append(json.loads(line)["text"])
            else:
                texts.append(line.rstrip("\n").split("\t")[-1])
            if limit and len(texts) >= limit:
                break
    return texts


def quantize_query_route(
    model: SentenceTransformer, calibration: list[str], save_directory: Path, ov_config: dict
) -> None:
    """Replace the query route's OpenVINO model by its int8 static quantization (optimum-intel's `OVQuantizer`),
    calibrated on `calibration` queries."""
    from datasets import Dataset
    from optimum.intel import OVConfig, OVModelForFeatureExtraction, OVQuantizationConfig, OVQuantizer

    query_transformer = model[0].sub_modules["query"][0]
    tokenized = query_transformer.tokenizer(calibration, padding="max_length", max_length=64, truncation=True)
    dataset = Dataset.from_dict(dict(tokenized))
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(calibration)))
    OVQuantizer.from_pretrained(query_transformer.model).quantize(
        calibration_dataset=dataset, save_directory=str(save_directory), ov_config=config
    )
    query_transformer.model = OVModelForFeatureExtraction.from_pretrained(
        save_directory, file_name="openvino/openvino_model.xml", ov_config=ov_config
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="A saved student folder (hfdistill's Router folder).")
    parser.add_argument("--queries", required=True, help="Queries timed, e.g. MS MARCO dev queries.")
    parser.add_argument("--agreement_queries", nargs="+", required=True, help="Query files compared with torch.")
    parser.add_argument("--calibration_queries", help="Training queries to calibrate the int8 query route (300).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    query_prompt = json.loads((Path(args.model) / "config.json").read_text())["query_prompt"]

    plain = SentenceTransformer(args.model, device="cpu")
    ov_config = {"INFERENCE_NUM_THREADS": str(args.threads)}
    served = {
        "student-openvino": SentenceTransformer(args.model, backend="openvino", model_kwargs={"ov_config": ov_config})
    }
    if args.calibration_queries:
        int8 = SentenceTransformer(args.model, backend="openvino", model_kwargs={"ov_config": ov_config})
        quantize_query_route(int8, read_queries(args.calibration_queries, 300), out / "query-int8", ov_config)
        served["student-openvino-int8"] = int8
    encoders = {
        "teacher": lambda texts, batch_size: plain.encode_document(texts, prompt=query_prompt, batch_size=batch_size),
        "student": lambda texts, batch_size: plain.encode_query(texts, batch_size=batch_size),
        "teacher-openvino": lambda texts, batch_size: served["student-openvino"].encode_document(
            texts, prompt=query_prompt, batch_size=batch_size
        ),
        **{
            name: (lambda texts, batch_size, m=model: m.encode_query(texts, batch_size=batch_size))
            for name, model in served.items()
        },
    }

    agreement = {}
    texts = [text for path in args.agreement_queries for text in read_queries(path)]
    embeddings = {name: torch.as_tensor(encoders[name](texts, 64)) for name in ["student", *served]}
    for name in served:
        cosine = torch.nn.functional.cosine_similarity(embeddings[name], embeddings["student"])
        agreement[name] = {
            "queries": len(texts),
            "mean_cosine": cosine.mean().item(),
            "min_cosine": cosine.min().item(),
        }
    torch.save({"texts": texts, "embeddings": embeddings}, out / QUERY_EMBEDDINGS)

    timed = read_queries(args.queries)
    speed = {name: {} for name in encoders}
    for batch_size in args.batch_sizes:
        batch = timed[: max(batch_size * 4, 256)] if batch_size > 1 else timed[:200]
        timings = {name: [] for name in encoders}
        for repeat in range(args.repeats + 1):
            for name, encode in encoders.items():
                start = time.perf_counter()
                encode(batch, batch_size)
                if repeat:  # the first pass warms up
                    timings[name].append(len(batch) / (time.perf_counter() - start))
        for name in encoders:
            speed[name][str(batch_size)] = statistics.median(timings[name])
    report = {
        "model": args.model,
        "threads": args.threads,
        "agreement_with_torch_student": agreement,
        "queries_per_second": speed,
        "speedup_vs_torch_teacher": {
            name: {size: qps / speed["teacher"][size] for size, qps in sizes.items()} for name, sizes in speed.items()
        },
    }
    (out / "openvino_results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
