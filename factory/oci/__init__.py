"""OCI names and formats: image references, the registry client, OCI image layouts."""
