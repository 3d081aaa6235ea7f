"""Build with buildx, test under a hardened runtime, SBOM, vulnerability scan, and the gates."""
