"""Below every stage: the error classes and exit codes, the model types, platforms, versions, lifecycle,
logging, the label contract."""
