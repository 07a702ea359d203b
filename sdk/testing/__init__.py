"""Real components for tests and local runs.

Kept out of the core import path on purpose: these helpers start processes and need extras
(a JVM, the Kafka jars, confluent-kafka) that compiling a pipeline never does.
"""
