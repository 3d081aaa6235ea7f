"""What app teams read: the catalog, its static site, and package changelogs between versions."""
