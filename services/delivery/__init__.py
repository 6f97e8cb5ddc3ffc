"""delivery: renditions over HTTP at stable, signed, cacheable URLs (R10).

The URL scheme is imagepipe.delivery's; this service parses, checks and serves it. The
HTTP framework is confined to http.py: core.DeliveryCore takes (method, path, query,
headers) and returns a reply description, so any server can mount it.
"""
