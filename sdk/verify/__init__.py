"""Offline checks of compiled manifests with the real upstream validators (the Argo linters)."""
