"""Trainer that aligns the student's query embeddings with the frozen teacher's (Trainer hooks, no custom loop)."""

import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import TrainOutput, get_last_checkpoint

from .data import AlignmentCollator, QueryAlignmentDataset
from .evaluation import RetrievalEvaluator
from .losses import alignment_loss
from .model_card import write_model_card
from .modeling_asymmetric import AsymmetricDualEncoder
from .persistence import ROUTES_FILE
from .training_args import EmbeddingAlignmentConfig

TRAINER_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*", "trainer_state.json", "training_args.bin")


def alignment_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Mean cosine similarity between student and teacher embeddings of held-out queries."""
    student, teacher = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
    cosine = (student * teacher).sum(-1) / (np.linalg.norm(student, axis=-1) * np.linalg.norm(teacher, axis=-1))
    return {"mean_cosine": float(cosine.mean())}


class EmbeddingAlignmentTrainer(Trainer):
    """Trains only the student query encoder; datasets yield `text` and `teacher_embeddings` (see `data.py`)."""

    def __init__(
        self,
        model: AsymmetricDualEncoder,
        args: EmbeddingAlignmentConfig,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_metrics=None,
        **kwargs,
    ):
        if not isinstance(args, EmbeddingAlignmentConfig):
            raise ValueError(
                f"args must be EmbeddingAlignmentConfig (it carries the loss), got {type(args).__name__}."
            )
        processing_class = processing_class or model.query_tokenizer
        model.freeze_document_encoder()
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator or AlignmentCollator(processing_class),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics or alignment_metrics,
            **kwargs,
        )
        # The loss is a per-batch mean: let Trainer scale it for gradient accumulation.
        self.model_accepts_loss_kwargs = False
        self.retrieval_evaluator = (
            RetrievalEvaluator(args.retrieval_eval_dir, args.retrieval_cache_dir, args.per_device_eval_batch_size)
            if args.retrieval_eval_dir
            else None
        )

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Adds the student's retrieval nDCG@10 and retention to the alignment metrics, as the paper tracks them."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.retrieval_evaluator is not None:
            scores = self.retrieval_evaluator(self.accelerator.unwrap_model(self.model))
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        return output

    def _get_train_sampler(self, train_dataset=None):
        """`group_by_length` takes the dataset's token counts (`QueryAlignmentDataset.lengths`), where Trainer would
        read every item to count them: millions of reads before the first step."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, QueryAlignmentDataset):
            return super()._get_train_sampler(train_dataset)
        batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(batch_size, lengths=dataset.lengths)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        teacher_embeddings = inputs.pop("teacher_embeddings")
        outputs = model(**inputs, chunk_cost=self.args.length_chunk_cost if model.training else None)
        loss = alignment_loss(outputs.query_embeds, teacher_embeddings, self.args.loss)
        if not torch.isfinite(loss):  # Trainer would skip it in the logs and go on training a broken model
            raise FloatingPointError(
                f"The alignment loss is {loss.item()} at step {self.state.global_step}: training stopped before "
                "the broken student is saved. Lower --learning_rate, or check the teacher embeddings."
            )
        return (loss, outputs) if return_outputs else loss

    def create_model_card(self, *args, **kwargs) -> None:
        """hfdistill's card (teacher, layers, results found in output_dir) instead of Trainer's default one."""
        if self.is_world_process_zero():
            model = self.accelerator.unwrap_model(self.model)
            write_model_card(model, self.args.output_dir, getattr(self, "hub_model_id", None))

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs) -> TrainOutput:
        """Trainer's `train`; resumed from a checkpoint that already reached `max_steps` (a run stopped after its last
        checkpoint, before its end), it loads that checkpoint and trains no further step."""
        if self.model_wrapped is self.model:
            # `evaluate` before `train` (the recipe scores the untrained student) prepares the model for evaluation,
            # and accelerate marks it prepared: its training `prepare` would then skip the DDP wrap, and under several
            # processes each would train its own copy on its own batches, never averaging a gradient.
            vars(self.model).pop("_is_accelerate_prepared", None)
        path = get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
        if path and self.args.max_steps > 0 and Path(path, TRAINER_STATE_NAME).is_file():
            state = TrainerState.load_from_json(str(Path(path, TRAINER_STATE_NAME)))
            if state.global_step >= self.args.max_steps:
                self._load_from_checkpoint(path)
                self.state = state
                return TrainOutput(state.global_step, 0.0, {"resumed_at_step": state.global_step})
        return super().train(resume_from_checkpoint, trial, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Checkpoints hold the student's layout (weights in the sentence-transformers route folders): read it back,
        without drawing from torch's random numbers (building the model initialises weights), so that a resumed run
        draws the batches and dropout of the run it continues."""
        with torch.random.fork_rng(devices=[]):
            if not Path(resume_from_checkpoint, ROUTES_FILE).is_file():
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            target = self.accelerator.unwrap_model(model or self.model)
            target.load_state_dict(type(target).from_pretrained(resume_from_checkpoint).state_dict())

    def _load_best_model(self) -> None:
        if not Path(self.state.best_model_checkpoint, ROUTES_FILE).is_file():
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoint pushes copy only a root weights file and config: copy the whole student layout (route folders,
        code) instead, then add the card."""
        if self.is_world_process_zero():
            shutil.copytree(
                checkpoint_folder,
                self.args.output_dir,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(*TRAINER_FILES),
            )
            self.create_model_card()
        super()._push_from_checkpoint(checkpoint_folder)
