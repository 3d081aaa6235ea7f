"""Manifests into build contexts (images/) and into a plan of what must be built and why."""
