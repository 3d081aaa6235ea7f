"""Distro security fixes: which packages of a published image have fixes pending in its distribution's archive."""
