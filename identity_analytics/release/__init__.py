"""Releases audited together: the ledger of everything published and the joint audit."""
