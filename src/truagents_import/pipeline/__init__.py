"""Rows to contacts to a sink: the row pipeline, the helper process, staging, rejects and the run loop."""
