"""The one place each external tool is called: docker/buildx, every other command, git, CI output."""
