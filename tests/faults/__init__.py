"""Faults the vault must survive: processes killed mid-work, connections lost, a full disk."""
