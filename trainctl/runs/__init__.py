"""Run directories and what runs in them: `files` (the file-name table), `atomic` (atomic
writes, JSON), `tensors` (safetensors I/O), `history`, `checkpoints`, `rundir` (RunDir);
`build` (config → objects), `train` (train_from_config, resume_training), `inference`
(open_run, predict, evaluate), `summary`."""
