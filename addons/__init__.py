"""mitmproxy addons: chat2api.py (the API), admin.py (token management), mirror.py."""
