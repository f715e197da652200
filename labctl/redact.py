"""Credentials out of everything labctl shows or stores.

A store URI may carry its keys (``s3://KEY:SECRET@bucket/prefix``, or
``?access_key=…&secret_key=…&session_token=…``). The store itself needs them; the
manifest, the summary, progress and error lines never do. ``redact`` keeps the rest
of the text as it was, so a reader still sees which store was meant.
"""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"?#]+)@")
_SECRET_PARAM = re.compile(r"(?i)(?P<key>\b(?:access_key|secret_key|session_token|password|passwd|token|"
                           r"aws_access_key_id|aws_secret_access_key|sas_token|account_key)=)(?P<value>[^&\s'\"#]+)")
HIDDEN = "***"


def redact(text: str) -> str:
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{HIDDEN}", text)


def redact_all(value: Any) -> Any:
    """Every string inside a JSON-like value, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_all(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    return value
