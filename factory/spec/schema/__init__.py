"""The JSON Schemas (data files): the only definition of the manifest, factory.yaml and catalog.json formats."""
