"""Calls to the ChatGPT web backend: HTTP through curl_cffi, dialects, failures."""
