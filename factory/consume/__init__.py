"""What app teams read and run: the catalog and its site, changelogs, the Dockerfile check, policies, prune."""
