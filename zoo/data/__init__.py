"""DataModules: files or hub data -> batches, and the DataSpec that carries sizes to the model."""
