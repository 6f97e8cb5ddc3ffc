"""imagepipe: the wire contract (imagepipe.v1) and the Python client."""
