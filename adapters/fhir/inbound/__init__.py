"""FHIR in: what regional trackers send the gateway as FHIR, mapped onto the national model.

``transaction`` maps a transaction (or batch) Bundle of Location and HealthcareService
resources in the gateway's profile onto native push records; ``gateway.fhir.transactions``
sends them down the same ingest path as a native push.
"""
