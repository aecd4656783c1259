"""Hugging Face `evaluate` modules shipped with hfdistill: `evaluate.load(RETRIEVAL_NDCG)`."""

from pathlib import Path

RETRIEVAL_NDCG = str(Path(__file__).parent / "retrieval_ndcg")
