"""curl_cffi: freeing a reused handle's header list (patch ``curl_headers``).

``Curl.setopt(HTTPHEADER, ...)`` appends to the handle's private ``_headers``
list and curl_cffi frees it only with the rest of the handle's buffers, so a
handle reused for many requests (upstream/transfer.py) would send every earlier
request's headers too. :func:`free_headers` frees it through curl_cffi's private
``_wrapper``. Without the patch, transfer.py closes each handle after its
request instead of keeping it for the next: correct, with the per-request
handle set-up it otherwise saves.
"""

from __future__ import annotations

from typing import Any

import patches


def fits() -> str | None:
    from curl_cffi import Curl, _wrapper

    if not hasattr(_wrapper, "ffi") or not hasattr(_wrapper.lib, "curl_slist_free_all"):
        return "curl_cffi._wrapper has no ffi or curl_slist_free_all"
    curl = Curl()
    try:
        if getattr(curl, "_headers", None) != _wrapper.ffi.NULL:
            return "a new curl_cffi Curl has no empty _headers list"
    finally:
        curl.close()
    return None


def free_headers(curl: Any) -> bool:
    """Free the header list of ``curl``'s last request; False when the patch is
    off (the caller must then not reuse the handle)."""
    if not patches.active("curl_headers"):
        return False
    from curl_cffi._wrapper import ffi, lib

    headers = curl._headers
    if headers != ffi.NULL:
        lib.curl_slist_free_all(headers)
        curl._headers = ffi.NULL
    return True
