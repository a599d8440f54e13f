"""Encrypting upload gateway for patient files.

One folder per domain, each importing only those below it (``docs/architecture.md``):
``cli/`` and ``app.py`` with ``web/`` on top; ``services.py``, the one composition root;
the domains ``files/``, ``keys/``, ``audit/``, ``accounts/``; below them ``crypto/`` (the
pure object format), ``storage/`` (the bucket), ``db/`` (the schema) and ``config.py``; and
the kernel everything may import, ``errors.py`` (``GatewayError``) and ``principal.py``
(``Actor``).
"""
