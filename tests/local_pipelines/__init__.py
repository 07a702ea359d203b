"""Small pipelines of function stages for the local executor's tests (module level, so the
stage workers can import them)."""
