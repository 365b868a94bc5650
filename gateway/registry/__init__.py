"""The CQC registry in the store: synced from the CQC API, used to enrich and reconcile."""
