"""The publish pipeline: build, gate, push by digest, sign, attest, write the index, then move tags."""
