"""The registry client: the OCI distribution API. (Grows with the publish pipeline.)"""

from __future__ import annotations

import requests


def ping(host: str, *, insecure: bool = False, timeout: float = 5.0) -> str | None:
    """None when ``host`` speaks the distribution API (/v2/ answers 200 or 401), else the problem."""
    scheme = "http" if insecure else "https"
    try:
        resp = requests.get(f"{scheme}://{host}/v2/", timeout=timeout)
    except requests.RequestException as e:
        return f"not reachable ({type(e).__name__})"
    if resp.status_code in (200, 401):
        return None
    return f"/v2/ answered HTTP {resp.status_code}"
