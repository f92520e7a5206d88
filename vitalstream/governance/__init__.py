"""Governance: the audit trail, the kill switch, shadow runs, live quality monitoring and
the accuracy audit (docs/governance.md)."""
