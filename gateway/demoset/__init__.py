"""The national demo data set: ``generate(out_dir, seed)``.

Writes, deterministically (same seed, same bytes):
- ``push/<nhs-region>.json``: one push batch per non-London region (the gateway's format);
- ``london/homes.json``: London's homes in the London tracker's format;
- ``cqc/locations.json`` and ``cqc/providers.json``: the registry in the CQC API's shapes;
- ``manifest.json``: per-region figures computed from what was written, and every
  discrepancy planted for reconciliation, with its ids.

Care homes reproduce the reference table of ``capacity-model.md`` per region; a home near
the London border that London's tracker also reports is counted once, in its own region.
"""

from __future__ import annotations

from gateway.demoset.writer import generate

__all__ = ["generate"]
