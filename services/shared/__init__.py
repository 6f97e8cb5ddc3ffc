"""Code several services share: settings, server bootstrap, auth, errors, adapters."""
