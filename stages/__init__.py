"""The stage runtime: what runs inside every stage container, on Argo and locally."""
