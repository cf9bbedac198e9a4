"""The general plan's layout (kernels/plan_layers.py, plan_zoo.py; laid out by
train/compiled_plans.py): per layer a row of float options, slots into the typed list of flat
buffers and a row of int geometry columns."""

N_FPARAMS = 4  # float options per layer
# bufs slots of a layer (S_AUX + i: a kind's own scratch, see compiled.py)
S_Y, S_DX, S_Z, S_DZ, S_W0, S_W0_GRAD, S_W1, S_W1_GRAD, S_AUX = 0, 1, 2, 3, 4, 5, 6, 7, 8
N_SLOTS = S_AUX + 6
# geo columns: values per sample in and out, then per kind
G_IN, G_OUT, G_A = 0, 1, 2
# the widest row is a Bidirectional's (kernels/bidirectional_steps: two R_* rows of
# recurrent_steps.N_R = 10 columns, mode, draws); after it G_TIMES, the row's samples per sample
# (TimeDistributed's steps; 1 for any other layer)
G_TIMES = G_A + 22
N_GEO = G_TIMES + 1
