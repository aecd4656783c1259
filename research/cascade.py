"""Retention against mean cost per query of a cascade (`hfdistill.cascade`): the student answers, the queries it is
least sure of go to the teacher. For each student, task and routing rate: the cascade's nDCG@10 / the teacher's, with
the queries routed by each confidence signal (`margin`, `top_score`, the query's token count, the share of its tokens
the training never touched, both combined, and the student-teacher cosine a server cannot know), by chance (mean of 20
draws) and by an oracle that knows each query's loss (an upper bound no signal reaches). The threshold is set per task
from its own queries, as a user sets it from their own traffic: no labels are read. Speed: every student and the
cascades of the first student at `--check_rates` (calibrated on other MS MARCO dev queries than those timed, against
msmarco-sub5k's index) are timed against the fp32 teacher in one `measure_speed` run; a cascade's curve uses
speed-up(r) = 1 / (1 / student speed-up + r), which the timed cascades check. One cascade per student is also scored
through mteb (`evaluate_student`), which checks the per-query arithmetic.

    HF_HUB_OFFLINE=1 python -m research.cascade --students 0L=runs/e5-0L-50k 2L=runs/e5-2L-q50k \
        2L-all6=runs/index/all6-f0.8 --static 0L=runs/e5-0L-50k-static --data_dir ../shared/data/beir \
        --check_rates 0.05 0.1 0.2 --speed_queries ../shared/data/msmarco/queries.dev.small.tsv.gz \
        --parts curves speed report --output_dir research/results/cascade
"""

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pytrec_eval
import torch

from hfdistill import load_student
from hfdistill.benchmark import measure_speed
from hfdistill.cascade import CascadeQueryEncoder, document_texts, top_scores
from hfdistill.cli import parse_args
from hfdistill.data import load_queries
from hfdistill.embedding_cache import DEFAULT_CACHE_DIR
from hfdistill.evaluation import evaluate_student
from hfdistill.query_encoders import load_query_encoder
from hfdistill.retrieval_tasks import LocalBeirRetrieval, read_beir_folder
from hfdistill.teacher_pass import cached_teacher_embeddings
from research.language_table import DEV, XQUAD

GROUPS = {"dev": DEV, "xquad": tuple(f"xquad-{language}" for language in XQUAD)}


@dataclass
class CascadeArguments:
    students: list[str] = field(metadata={"help": "name=folder of each student (hfdistill students of one teacher)."})
    data_dir: str = field(metadata={"help": "Folder of BEIR-format task folders."})
    speed_queries: str | None = field(default=None, metadata={"help": "Queries to time them on (MS MARCO dev)."})
    static: list[str] = field(default_factory=list, metadata={"help": "name=folder: a student's static export."})
    tasks: list[str] = field(default_factory=lambda: [t for group in GROUPS.values() for t in group])
    rates: list[float] = field(
        default_factory=lambda: [0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1]
    )
    table_rates: list[float] = field(default_factory=lambda: [0, 0.05, 0.1, 0.2, 0.5], metadata={"help": "Tabled."})
    check_rates: list[float] = field(default_factory=lambda: [0.05, 0.2], metadata={"help": "Cascades timed."})
    parts: list[str] = field(default_factory=lambda: ["curves", "speed"], metadata={"help": "What to measure."})
    threads: int = field(default=2, metadata={"help": "CPU threads for the timings."})
    repeats: int = field(default=5, metadata={"help": "Timed passes (median)."})
    cache_dir: str = field(default=DEFAULT_CACHE_DIR, metadata={"help": "The teacher's embedding cache."})
    output_dir: str = field(default="research/results/cascade", metadata={"help": "Where the records go."})


def untrained_tokens(model) -> torch.Tensor:
    """`(vocabulary,)` booleans: the tokens whose embedding the student's training never changed (still the
    teacher's), which no training text held. Only a student cut from its teacher has them."""
    if model.config.student_config is not None:
        raise ValueError("The student is a model of its own, not cut from its teacher: it has no untrained tokens.")
    student = model.query_encoder.get_input_embeddings().weight
    return (student == model.document_encoder.get_input_embeddings().weight).all(dim=1)


def per_query_ndcg(queries: torch.Tensor, documents: torch.Tensor, ids: list[str], doc_ids: list[str], qrels) -> list:
    """nDCG@10 of each query (pytrec_eval, as mteb computes it) from its embedding's top 100 documents."""
    scores = queries @ documents.T
    top = scores.topk(min(100, len(doc_ids)), dim=1)
    run = {
        qid: {doc_ids[d]: float(s) for s, d in zip(values.tolist(), indices.tolist())}
        for qid, values, indices in zip(ids, top.values, top.indices)
    }
    measured = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return [measured[qid]["ndcg_cut_10"] for qid in ids]


def routed_ndcg(student: list, teacher: list, order: list[int], rate: float) -> float:
    """Mean nDCG@10 when the first `rate` of `order` (least sure first) are answered by the teacher."""
    routed = set(order[: round(rate * len(order))])
    return statistics.fmean(teacher[i] if i in routed else student[i] for i in range(len(student)))


def task_curves(model, encoder, task: str, args: CascadeArguments) -> dict:
    """Per signal, the retention at each rate on one task, and the student's / teacher's mean nDCG@10."""
    data = read_beir_folder(Path(args.data_dir) / task)
    doc_ids = list(data["corpus"])
    texts = document_texts(data["corpus"].values())
    ids, queries = list(data["queries"]), list(data["queries"].values())
    documents = torch.nn.functional.normalize(
        cached_teacher_embeddings(model, texts, args.cache_dir, 64, prompt_type="document").float(), dim=-1
    )
    teacher_queries = cached_teacher_embeddings(model, queries, args.cache_dir, 64).float()
    student_queries = encoder(queries, 64).float()
    teacher = per_query_ndcg(teacher_queries, documents, ids, doc_ids, data["qrels"])
    student = per_query_ndcg(student_queries, documents, ids, doc_ids, data["qrels"])
    best = top_scores(torch.nn.functional.normalize(student_queries, dim=-1), documents)
    tokens = model.query_tokenizer(queries, add_special_tokens=False)["input_ids"]
    unseen = untrained_tokens(model)
    unseen_share = [float(unseen[t].float().mean()) if t else 0.0 for t in tokens]
    margin = (best[:, 0] - best[:, 1]).tolist()
    signals = {
        "margin": margin,
        "top_score": best[:, 0].tolist(),
        "tokens": [len(t) for t in tokens],
        "seen": [-share for share in unseen_share],
        "margin_seen": [m - share for m, share in zip(margin, unseen_share)],
        # not known when serving: how far the student's embedding is from the teacher's (the bound of a predicted one)
        "teacher_cosine": torch.nn.functional.cosine_similarity(student_queries, teacher_queries).tolist(),
        "oracle": [t - s for s, t in zip(student, teacher)],  # larger loss = less sure
    }
    orders = {name: sorted(range(len(ids)), key=lambda i: values[i]) for name, values in signals.items()}
    orders["oracle"].reverse()
    draws = [random.Random(seed).sample(range(len(ids)), len(ids)) for seed in range(20)]
    mean_teacher = statistics.fmean(teacher)
    curves = {
        name: [routed_ndcg(student, teacher, order, rate) / mean_teacher for rate in args.rates]
        for name, order in orders.items()
    }
    curves["random"] = [
        statistics.fmean(routed_ndcg(student, teacher, d, rate) for d in draws) / mean_teacher for rate in args.rates
    ]
    return {"teacher_ndcg_at_10": mean_teacher, "student_ndcg_at_10": statistics.fmean(student), "curves": curves}


def checked_cascade(model, query_encoder, task: str, rate: float, args: CascadeArguments) -> dict:
    """One cascade scored through mteb on one task (threshold from the task's queries at `rate`)."""
    report = evaluate_student(model, "cascade", [LocalBeirRetrieval.from_folder(Path(args.data_dir) / task)],
                              args.cache_dir, query_encoder=query_encoder, cascade_rate=rate)  # fmt: skip
    (scores,) = report["tasks"].values()
    return {"task": task, "rate": rate, "retention": report["mean_retention"], "routed": scores["routed"]}


def main(args: CascadeArguments) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    students = dict(item.split("=", 1) for item in args.students)
    statics = dict(item.split("=", 1) for item in args.static)
    measured = {"curves", "speed"} & set(args.parts)
    models = {name: load_student(path).eval() for name, path in students.items()} if measured else {}
    if "curves" in args.parts:
        encoders = {name: (model, None) for name, model in models.items()}  # None: the student's PyTorch route
        encoders.update({f"{name}-static": (models[name], load_query_encoder(path)) for name, path in statics.items()})
        record = {"students": students, "static": statics, "rates": args.rates, "tasks": {}, "checks": []}
        for name, (model, encoder) in encoders.items():
            encode = (encoder or model).encode_queries
            record["tasks"][name] = {task: task_curves(model, encode, task, args) for task in args.tasks}
            record["checks"].append({"student": name, **checked_cascade(model, encoder, "scifact", 0.1, args)})
            print(name, record["checks"][-1])
        (out / "curves.json").write_text(json.dumps(record, indent=2))
    if "speed" in args.parts:
        (out / "speed.json").write_text(json.dumps(speeds(models, statics, args), indent=2))
    if "report" in args.parts:
        report(out, args.table_rates)


def group_retention(tasks: dict, signal: str) -> dict[str, list[float]]:
    """Per group of `GROUPS` (the tasks measured of it), the mean retention at each rate."""
    return {
        group: [statistics.fmean(values) for values in zip(*(tasks[t]["curves"][signal] for t in names if t in tasks))]
        for group, names in GROUPS.items()
        if any(t in tasks for t in names)
    }


def report(out: Path, table_rates: list[float]) -> None:
    """table.md (retention at `table_rates` against the mean speed-up at batch 32 and 1, per student and signal) and
    cascade.png (dev and XQuAD retention against mean speed-up at batch 32) from curves.json and speed.json."""
    import matplotlib.pyplot as plt

    curves, speed = json.loads((out / "curves.json").read_text()), json.loads((out / "speed.json").read_text())
    rates = curves["rates"]
    lines = ["| student | routed | speed-up b32 | speed-up b1 | dev: margin | random | oracle | "
             "XQuAD: margin | random | oracle |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for name, tasks in curves["tasks"].items():
        alone = speed["encoders"][name]["speedup"]
        mean_speedup = {b: [1 / (1 / alone[b] + rate) for rate in rates] for b in alone}
        by_signal = {signal: group_retention(tasks, signal) for signal in ("margin", "random", "oracle")}
        for rate in table_rates:
            i = rates.index(rate)
            cells = [f"{by_signal[s][g][i]:.1%}" for g in GROUPS for s in ("margin", "random", "oracle")]
            lines.append(f"| {name} | {rate:.0%} | {mean_speedup['32'][i]:.1f}x | {mean_speedup['1'][i]:.1f}x | "
                         + " | ".join(cells) + " |")  # fmt: skip
        for axis, group in zip(axes, GROUPS):
            (line,) = axis.plot(mean_speedup["1"], by_signal["margin"][group], marker=".", label=f"{name}, margin")
            axis.plot(mean_speedup["1"], by_signal["oracle"][group], ls=":", color=line.get_color())
    for axis, group in zip(axes, GROUPS):
        axis.set(xscale="log", xlabel="mean speed-up over the teacher, batch 1: 1 / (1 / s + r)")
        axis.set_title(f"{group} retention")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("retention (cascade nDCG@10 / teacher)")
    axes[1].legend(fontsize=8, title="dotted: oracle routing", title_fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "cascade.png", dpi=120)
    signals = [name for name in next(iter(curves["tasks"].values()))["scifact"]["curves"] if name != "oracle"]
    i = rates.index(0.1)
    lines += ["", "At 10% routed, per signal (dev / XQuAD):", "", "| student | " + " | ".join(signals) + " |",
              "|---|" + "---:|" * len(signals)]  # fmt: skip
    for name, tasks in curves["tasks"].items():
        cells = [group_retention(tasks, signal) for signal in signals]
        lines.append(f"| {name} | " + " | ".join(f"{c['dev'][i]:.1%} / {c['xquad'][i]:.1%}" for c in cells) + " |")
    checks = [f"- {c['student']}: {c['task']} at {c['rate']:.0%} routed, through mteb: retention {c['retention']:.1%}"
              for c in curves["checks"]]  # fmt: skip
    timed = []
    for name, e in speed["encoders"].items():
        if e["routed"] is not None:
            alone = speed["encoders"][name.split("-cascade-")[0]]["speedup"]
            model = {b: 1 / (1 / alone[b] + e["routed"]) for b in alone}
            timed.append(f"- {name}: routed {e['routed']:.1%} of the queries timed; measured {e['speedup']['1']:.1f}x "
                         f"at batch 1 (1 / (1 / s + r): {model['1']:.1f}x), {e['speedup']['32']:.1f}x at batch 32 "
                         f"({model['32']:.1f}x)")  # fmt: skip
    (out / "table.md").write_text("\n".join(lines + ["", *checks, "", *timed]) + "\n")


def speeds(models: dict, statics: dict, args: CascadeArguments) -> dict:
    """Queries/s at batch 1 and 32 of the teacher, every student, its static export and the first student's cascades
    at `check_rates`, in one run; the cascades' routing rate on the queries timed (the first 256 at batch 32, the
    first 200 of them at batch 1)."""
    queries = load_queries(args.speed_queries)
    timed, calibration = queries[:256], queries[-2000:]
    first, model = next(iter(models.items()))
    sub5k = read_beir_folder(Path(args.data_dir) / "msmarco-sub5k")
    texts = document_texts(sub5k["corpus"].values())
    documents = cached_teacher_embeddings(model, texts, args.cache_dir, 64, prompt_type="document")
    others = {name: m.encode_queries for name, m in models.items() if name != first}
    for name, path in statics.items():
        others[f"{name}-static"] = load_query_encoder(path, args.threads).encode_queries
    cascades = {}
    for rate in args.check_rates:
        for name in [first] + [f"{first}-static"] * (first in statics):
            encoder = None if name == first else load_query_encoder(statics[first], args.threads)
            cascade = CascadeQueryEncoder(model, documents, query_encoder=encoder)
            cascade.calibrate(calibration, rate)
            cascade.encode_queries(timed[:256])
            cascades[f"{name}-cascade-{rate}"] = (cascade, float(cascade.routed.float().mean()))
            others[f"{name}-cascade-{rate}"] = cascade.encode_queries
    results = measure_speed(model, timed, (1, 32), args.repeats, args.threads, 200, other_encoders=others)
    record = {"student": first, "threads": results.threads, "encoders": {}, "benchmark": results.to_dict()}
    for encoder in results.encoders:
        name = first if encoder.side == "student" else encoder.name
        record["encoders"][name] = {
            "queries_per_second": encoder.throughput_qps,
            "speedup": {b: results.speedup(encoder, b) for b in results.batch_sizes},
            "routed": cascades[name][1] if name in cascades else None,
        }
    return record


if __name__ == "__main__":
    main(*parse_args((CascadeArguments,)))
