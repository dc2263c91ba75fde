"""Durable storage for mailwarm (extras ``storage`` and ``postgres``)."""
