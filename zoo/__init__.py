"""zoo: a declarative model zoo of recurrent neural networks.

Every model is the same picture, read left to right, and every part is a seam:

    input --encoder--> features --recurrence(cell)--> states --head--> output

    Cell        one step  h_t = f_W(h_{t-1}, x_t): (B, I), state -> (B, H), state   zoo.cells
    Recurrence  the only time loop: (B, T, I), lengths, state0 -> (B, T, D*H), state zoo.recurrence
                (fused nn.RNN/LSTM/GRU kernels when it can, a step loop when it must)
    Encoder     raw input -> features: image (B, 3, H, W) -> (B, D) [or a grid (B, N, C)],
                tokens (B, T) -> (B, T, D), frames (B, T, 3, H, W) -> (B, T, D)  zoo.encoders
    Head        one per RNN mode: many_to_one (B, T, H) -> (B, C); synced -> (B, T, C);
                one_to_many and seq2seq decoders (teacher forcing, and generate():
                greedy, sampling, batched beam search)                          zoo.heads
    Task        a LightningModule per task: wires the parts, loss, metrics, optimiser zoo.tasks
    DataModule  files or hub data -> batches, and the DataSpec (vocabularies, label sets,
                special ids): the only way sizes reach the model                 zoo.data

Cells, encoders and heads are plain torch modules; Lightning lives in tasks and training,
Hydra in the entry point (``python -m zoo``) and the configs (``conf/``, one folder per seam).
"""

import time as _time

STARTED = _time.time()  # when the zoo was first imported: "first training step after ... s"

__all__ = ["build", "load"]


def __getattr__(name: str):
    # torch and Lightning load on first use, so `import zoo` and `python -m zoo --help` stay quick
    if name in __all__:
        from zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
