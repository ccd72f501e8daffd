"""Tasks: one LightningModule per RNN mode/task. A task wires encoder, recurrence and head
from their configs and the DataSpec, and owns the loss, the metrics, the optimiser and the
state policy. Each declares what its encoder must consume and which head modes it drives;
:mod:`zoo.run.checks` checks both before any data is loaded."""
