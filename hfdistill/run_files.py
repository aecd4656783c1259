"""The names of the files a run folder holds, in one place: what the recipes write, the card reads and a push uploads.

Not part of the code a saved model ships: a saved student's own files (config, weights, tokenizer, routes) are named
by transformers, sentence-transformers and `persistence`.
"""

TRAINING_RECORD = "distillation.json"  # recipes/distill.py: the data, the recipe, held-out alignment, environment
EVAL_RESULTS = "eval_results.json"  # recipes/evaluate.py: retention per task, the student's PyTorch query encoder
EXPORTED_EVAL_RESULTS = "eval_results_{}.json"  # {} = the backend of --query_encoder, or cascade[-<backend>]
SPEED_RESULTS = "speed_results.json"  # recipes/benchmark.py: queries/s of student and teacher, side by side
AGREEMENT_FILE = "agreement.json"  # the check before a push, per query set
ENCODER_FILE = "query_encoder.json"  # an exported query encoder: what it encodes, and how it reads queries
TRAINER_STATE = "trainer_state.json"  # Trainer writes it last into a checkpoint: its presence marks one complete
RUN_LOCK = "run.lock"  # pid, host and start of the run writing into a folder
RUN_SETTINGS = "run_settings.json"  # what a run was started with: a resume must match it
RUN_FILES = ("config.json", "model.safetensors", TRAINER_STATE, "training_args.bin")  # a folder holding a run
RESULT_FILES = (EVAL_RESULTS, EXPORTED_EVAL_RESULTS.format("*"), SPEED_RESULTS, TRAINING_RECORD)  # what a card reads
