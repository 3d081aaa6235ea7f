"""What the repository declares, validated: factory.yaml, the manifests and their JSON Schemas, the policy,
the org CA certificates."""
