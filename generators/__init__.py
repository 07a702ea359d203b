"""Generators: pure functions from the IR to Kubernetes objects, and the writers for them."""
