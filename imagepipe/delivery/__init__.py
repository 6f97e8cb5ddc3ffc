"""Delivery URLs: their grammar, signatures and versions (standard library only).

The client signs with it, the catalog signs with it for callers without a secret, and
the delivery service parses and verifies with it: one definition of the URL scheme.
"""

from imagepipe.delivery.urls import (
    EXTENSIONS,
    FORMATS_BY_EXTENSION,
    DeliveryPath,
    ParsedQuery,
    canonical_string,
    delivery_path,
    parse_path,
    parse_query,
    preset_version,
    sign,
    signed_url,
    verify,
)

__all__ = [
    "EXTENSIONS",
    "FORMATS_BY_EXTENSION",
    "DeliveryPath",
    "ParsedQuery",
    "canonical_string",
    "delivery_path",
    "parse_path",
    "parse_query",
    "preset_version",
    "sign",
    "signed_url",
    "verify",
]
