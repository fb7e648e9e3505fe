"""mitmproxy's addons package imported on demand (patch ``deferred_addons``).

``mitmproxy.addons``' ``__init__`` imports all of mitmdump's addons, with Flask
(the onboarding app), ldap3 and passlib (proxy authentication), the content
views (the flow dump) ..., about 14 MB that chat2api never runs.
:func:`defer_package_init` imports that package without running its
``__init__`` until a name other than a submodule is asked of it
(``mitmproxy.addons.default_addons`` still works, and then costs what it always
did). The lean launcher's ``Compat`` addon then defines the options of the
heavy left-out addons from :func:`heavy_options`, a copy of what those addons
define in the mitmproxy versions listed there; for any other version the patch
stands aside and ``Compat`` asks the real addons.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any, Optional


def defer_package_init(name: str) -> bool:
    """Put package ``name`` in ``sys.modules`` with its ``__init__`` not yet run.

    Its submodules import as usual (``from name import sub``); the first access to
    any other name of the package runs the real ``__init__`` in place, so nothing
    that uses the package's own names breaks. False if the package was imported
    already (or is not a package): then nothing changes.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    loader = spec.loader if spec is not None else None
    if spec is None or loader is None or spec.submodule_search_locations is None:
        return False
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        try:
            # `from package import sub` asks for `sub` before importing it.
            return importlib.import_module(f"{name}.{attr}")
        except ModuleNotFoundError as e:
            if e.name != f"{name}.{attr}":
                raise
        # One of the package's own names: run its __init__ now, once.
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attr)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)
    return True


# The options of mitmdump's left-out addons whose modules cost megabytes to import,
# as mitmproxy 11.0.2 and 12.3.1 define them (tests/test_patches_deferred.py
# compares): name, type, default, help, choices.
_HEAVY_OPTIONS: tuple[tuple[str, Any, Any, str, Sequence[str] | None], ...] = (
    # mitmproxy.addons.dumper (the content views)
    (
        "flow_detail",
        int,
        1,
        """
        The display detail level for flows in mitmdump: 0 (quiet) to 4 (very verbose).
          0: no output
          1: shortened request URL with response status code
          2: full request URL with response status code and HTTP headers
          3: 2 + truncated response content, content of WebSocket and TCP messages \
(content_view_lines_cutoff: 512)
          4: 3 + nothing is truncated
        """,
        None,
    ),
    (
        "dumper_default_contentview",
        str,
        "auto",
        "The default content view mode.",
        None,  # the content views of the installed version: _CONTENT_VIEWS
    ),
    ("dumper_filter", Optional[str], None, "Limit which flows are dumped.", None),
    # mitmproxy.addons.export
    (
        "export_preserve_original_ip",
        bool,
        False,
        """
        When exporting a request as an external command, make an effort to
        connect to the same IP as in the original request. This helps with
        reproducibility in cases where the behaviour depends on the
        particular host we are connecting to. Currently this only affects
        curl exports.
        """,
        None,
    ),
    # mitmproxy.addons.maplocal
    (
        "map_local",
        Sequence[str],
        [],
        """
        Map remote resources to a local file using a pattern of the form
        "[/flow-filter]/url-regex/file-or-directory-path", where the
        separator can be any character.
        """,
        None,
    ),
    # mitmproxy.addons.onboarding (Flask)
    ("onboarding", bool, True, "Toggle the mitmproxy onboarding app.", None),
    (
        "onboarding_host",
        str,
        "mitm.it",
        """
        Onboarding app domain. For transparent mode, use an IP when a DNS
        entry for the app domain is not present.
        """,
        None,
    ),
    # mitmproxy.addons.proxyauth (ldap3, passlib)
    (
        "proxyauth",
        Optional[str],
        None,
        """
        Require proxy authentication. Format:
        "username:pass",
        "any" to accept any user/pass combination,
        "@path" to use an Apache htpasswd file,
        or "ldap[s]:url_server_ldap[:port]:dn_auth:password:dn_subtree\
[?search_filter_key=...]" for LDAP authentication.
        """,
        None,
    ),
)

# dumper_default_contentview's choices, per mitmproxy version.
_CONTENT_VIEWS: dict[str, tuple[str, ...]] = {
    "11.0.2": (
        "auto",
        "raw",
        "raw hex stream",
        "hex dump",
        "graphql",
        "json",
        "xml/html",
        "wbxml",
        "javascript",
        "css",
        "url-encoded",
        "multipart form",
        "image",
        "query",
        "protocol buffer",
        "msgpack",
        "grpc/protocol buffer",
        "mqtt",
        "http/3 frames",
        "dns-over-https",
    ),
    "12.3.1": (
        "auto",
        "dns",
        "graphql",
        "grpc",
        "hex dump",
        "hex stream",
        "http/3 frames",
        "image",
        "javascript",
        "json",
        "mqtt",
        "msgpack",
        "multipart form",
        "protobuf",
        "query",
        "raw",
        "socket.io",
        "url-encoded",
        "viewcss",
        "wbxml",
        "xml/html",
        "zip archive",
    ),
}

HeavyOption = tuple[str, Any, Any, str, Sequence[str] | None]


def heavy_options(version: str | None = None) -> tuple[HeavyOption, ...]:
    """The copied options for ``version`` (the installed mitmproxy's by default)."""
    if version is None:
        from mitmproxy.version import VERSION

        version = VERSION
    views = _CONTENT_VIEWS[version]
    return tuple(
        (name, typespec, default, help, views if name == "dumper_default_contentview" else c)
        for name, typespec, default, help, c in _HEAVY_OPTIONS
    )


def fits() -> str | None:
    from mitmproxy.version import VERSION

    if VERSION not in _CONTENT_VIEWS:
        known = ", ".join(_CONTENT_VIEWS)
        return f"its copy of the left-out addons' options is of mitmproxy {known}, not {VERSION}"
    if "mitmproxy.addons" in sys.modules:
        return "mitmproxy.addons was imported already"
    return None


def apply() -> None:
    defer_package_init("mitmproxy.addons")
