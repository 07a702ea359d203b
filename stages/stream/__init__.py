"""The stream plane's runtime: long-running Kafka workers running a pipeline's hot path.

``batch`` holds what a batch is made of, ``steps`` the hot path's tasks compiled from the IR,
``plan`` runs a batch through the fused stages, ``triton`` micro-batches inference over gRPC,
``worker`` is the Kafka loop with its transactions, ``metrics`` its Prometheus surface, and
``launcher`` starts workers (and the broker and Triton) for ``rtflow run --local``.
"""
