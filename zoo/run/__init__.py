"""The machinery of a run: composing and checking its config (``configs``, ``checks``), training
it into a run folder (``train``), resuming it (``resume``), its callbacks and loggers, the DDP
ranks it starts (``launch``), what may be built from a config that came from outside
(``trust``), and the summary of a sweep (``sweep_summary``). Nothing here is imported at
start-up but what ``python -m zoo --help`` needs (``configs``)."""
