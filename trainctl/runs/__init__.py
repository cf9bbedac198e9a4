"""Run directories, what runs in them, and the files that travel between trainctl and other
runtimes: `files` (the file-name table), `atomic` (atomic writes, JSON), `tensors`
(safetensors I/O), `history`, `checkpoints`, `rundir` (RunDir); `build` (config → objects),
`train` (train_from_config, resume_training), `inference` (open_run, predict, evaluate),
`summary`; `formats/` (exchange formats)."""
