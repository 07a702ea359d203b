"""Offline checks of compiled manifests with the real upstream validators (the Argo linters)."""

# The Kubernetes version whose schemas rtflow lint validates core objects (and ObjectMeta) against.
KUBERNETES_VERSION = "1.29"
