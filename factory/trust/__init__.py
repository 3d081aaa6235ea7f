"""Signatures and attestations: cosign signing, the attestation predicates, verification."""
