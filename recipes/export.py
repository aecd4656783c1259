"""Export a student's query encoder for serving outside PyTorch: ONNX, optionally int8 dynamic-quantized; or a
0-layer student as static token vectors (sentence-transformers' `StaticEmbedding`, or model2vec's `StaticModel`: a
lookup and a mean).

python recipes/export.py --model out/minilm-2L --backend onnx --quantize int8 --output_dir out/minilm-2L-onnx
python recipes/export.py --model out/minilm-0L --backend static --output_dir out/minilm-0L-static
python recipes/export.py --model out/e5-small-0L --backend model2vec --output_dir out/e5-small-0L-model2vec

The folder is the query side as a sentence-transformers model, with `onnx/model.onnx` (and `onnx/model_qint8.onnx`);
load it with `hfdistill.export.OnnxQueryEncoder(folder).encode_queries(queries)`, or with
`SentenceTransformer(folder, backend="onnx", model_kwargs={"file_name": "onnx/model_qint8.onnx"})` where
sentence-transformers' ONNX backend runs; a static folder with `SentenceTransformer(folder)`, a model2vec folder with
`model2vec.StaticModel.from_pretrained(folder)`. Static vectors approximate the 0-layer student (see
`hfdistill.static`): score the folder with `recipes/evaluate.py --query_encoder`. Documents stay the teacher's torch
embeddings.
"""

from dataclasses import dataclass, field

from hfdistill import load_student
from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.export import BACKENDS, QUANTIZATIONS, STATIC_BACKENDS, check_export, export_query_encoder
from hfdistill.preflight import check_spares_a_model
from hfdistill.static import check_static


@dataclass
class ExportArguments:
    model: str = field(metadata={"help": "Folder or Hub id of an hfdistill student."})
    output_dir: str = field(metadata={"help": "Where the exported query encoder is written."})
    backend: str = field(default="onnx", metadata={"help": f"Runtime to export for: {BACKENDS}."})
    quantize: str | None = field(
        default=None, metadata={"help": f"Weight quantization: {QUANTIZATIONS} (default none)."}
    )
    side: str = field(default="student", metadata={"help": "`student`, or `teacher` (its query side, a baseline)."})


def main(args: ExportArguments) -> None:
    with input_errors():
        check_export(args.backend, args.quantize, args.side)
        check_spares_a_model(args.output_dir)  # the student's own folder, or any other model's
        model = load_student(args.model)
        if args.backend in STATIC_BACKENDS:
            check_static(model, args.backend)  # here, where a refusal is one line
    path = export_query_encoder(model, args.output_dir, args.backend, args.quantize, args.side)
    print(f"Exported the {args.side} query encoder of {args.model} to {path}")
    print(
        f"Next, score the export: python recipes/evaluate.py --model {args.model} --query_encoder {args.output_dir} "
        f"--tasks <mteb tasks or BEIR folders> --output_dir {args.model}"
    )


if __name__ == "__main__":
    setup_logging()
    with input_errors():
        arguments = parse_args((ExportArguments,))
    main(*arguments)
