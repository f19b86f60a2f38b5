"""Order lookup tool for the support agent example."""

import json
import os
import urllib.request


def order_status(order_id: str) -> str:
    """Return the status of an order from the order API named by ORDER_API_URL."""
    base = os.environ.get("ORDER_API_URL", "http://127.0.0.1:9000")
    with urllib.request.urlopen(f"{base}/orders/{order_id}", timeout=5) as response:
        return json.load(response).get("status", "unknown")
