"""Accounts: the ChatGPT token pool, its health, refresh and safe storage.

Free of mitmproxy: the addons (``addons/admin.py`` and the API addon) hold one
shared :class:`accounts.pool.Pool` built over one :class:`accounts.store.Store`.
"""
