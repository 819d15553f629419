"""The top layer: the configuration (loading, schema, checks), the run settings built from it, the experiment record,
the training budget and the learning-rate sweep, and the user study's workflow targets. Nothing below imports it."""
