"""The base-image factory: build, test, sign and publish an organisation's container base images."""

__version__ = "0.1.0"
