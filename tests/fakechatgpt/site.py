"""The site itself, as far as the mirror tests need it: `GET /` and `/assets/*`.

The page references its assets and its API by chatgpt.com's absolute host names (like the real
site's bundles do), so a mirror has to rewrite them to reach anything. Its script reads its
bearer from the page context (`/api/auth/session`, as the real front-end did) and calls
`/backend-api/me` and `/backend-api/conversations` with it, then renders what it got.

Strict like a CDN: assets never take credentials (a request with `Authorization` or a cookie is
refused with 400), and unknown assets are 404.

The page also carries what the sentinel's browser probe reports (docs/site-page.md): a build id
in `<html data-build>`, a script whose path holds a deployment id (`c/<id>/_`, the classic
probe's "dpl") and the sentinel SDK's script. `sentinel.py` checks configs against them.
"""

from __future__ import annotations

from .http11 import Request, Response, json_response
from .state import make_png

APP_JS = "/assets/app-8c1d4e.js"
SITE_CSS = "/assets/site-3f2a9b.css"
LOGO_PNG = "/assets/logo-5e6f70.png"
MANIFEST_JS = "/assets/c/Zq7Lr2Vt9kXa/_/manifest-6a1f3e.js"
SENTINEL_SDK = "/backend-api/sentinel/sdk.js"

#: The page's build (`oai-client-version`, the 2026 config element 6).
BUILD = "prod-5d1c2b7e9a40f3c6d8b1a2e4f6071829304a5b6c"
#: Every `<script src>` of the page, as a browser's `script.src` reads them.
SCRIPTS = (
    f"https://cdn.oaistatic.com{MANIFEST_JS}",
    f"https://cdn.oaistatic.com{APP_JS}",
    f"https://chatgpt.com{SENTINEL_SDK}",
)
#: The classic config element 6: the deployment id in the last script path that has one.
DPL = "c/Zq7Lr2Vt9kXa/_"

PAGE = f"""<!doctype html>
<html lang="en" data-build="{BUILD}">
<head>
<meta charset="utf-8">
<title>ChatGPT</title>
<link rel="stylesheet" href="https://cdn.oaistatic.com{SITE_CSS}">
<script src="{SCRIPTS[0]}" defer></script>
<script src="{SCRIPTS[1]}" defer></script>
<script src="{SCRIPTS[2]}" async></script>
</head>
<body data-ready="0">
<header><img id="logo" src="https://cdn.oaistatic.com{LOGO_PNG}" alt="" width="32" height="32">
<span>ChatGPT</span></header>
<main>
<h1 id="hello">Loading…</h1>
<p>Home: <a id="home" href="https://chatgpt.com/">chatgpt.com</a></p>
<h2>Your conversations</h2>
<ul id="conversations"></ul>
</main>
</body>
</html>
"""

APP = """(async () => {
  const api = "https://chatgpt.com/backend-api";
  const hello = document.getElementById("hello");
  try {
    const session = await (await fetch("/api/auth/session")).json();
    const headers = { authorization: "Bearer " + session.accessToken };
    const me = await (await fetch(api + "/me", { headers })).json();
    hello.textContent = "Hello, " + me.name + " (" + me.email + ")";
    const list = await (await fetch(api + "/conversations?offset=0&limit=28", { headers })).json();
    const ul = document.getElementById("conversations");
    for (const item of list.items) {
      const li = document.createElement("li");
      li.textContent = item.title;
      li.dataset.id = item.id;
      ul.appendChild(li);
    }
    if (!list.items.length) ul.innerHTML = "<li><em>none yet</em></li>";
    document.body.dataset.total = String(list.total);
    document.body.dataset.ready = "1";
  } catch (e) {
    hello.textContent = "error: " + e;
    document.body.dataset.ready = "error";
  }
})();
"""

CSS = """body { font-family: system-ui, sans-serif; margin: 0;
       background: #f7f7f8; color: #202123; }
header { display: flex; gap: .6rem; align-items: center; padding: .8rem 1.2rem;
         background: #202123; color: #fff; font-weight: 600; }
main { max-width: 40rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem;
       border-radius: 12px; box-shadow: 0 1px 6px rgba(0,0,0,.08); }
li { padding: .3rem 0; }
"""

ASSETS: dict[str, tuple[bytes, str]] = {
    APP_JS: (APP.encode(), "application/javascript"),
    MANIFEST_JS: (b"self.__manifest = {};\n", "application/javascript"),
    SENTINEL_SDK: (b"self.SentinelSDK = {};\n", "application/javascript"),
    SITE_CSS: (CSS.encode(), "text/css"),
    LOGO_PNG: (make_png(32, 32, (0x10, 0xA3, 0x7F)), "image/png"),
}


def serve(req: Request) -> Response:
    if req.method not in ("GET", "HEAD"):
        return json_response(405, {"detail": "Method Not Allowed"})
    if req.path == "/":
        return Response(200, PAGE.encode(), "text/html; charset=utf-8")
    if req.path == SENTINEL_SDK:  # a public script, whatever credentials come along
        return Response(200, ASSETS[SENTINEL_SDK][0], "application/javascript")
    if req.header("authorization") or req.header("cookie"):
        return json_response(400, {"detail": "assets take no credentials"})
    asset = ASSETS.get(req.path)
    if asset is None:
        return json_response(404, {"detail": "Not Found"})
    body, kind = asset
    return Response(200, body, kind, [("cache-control", "public, max-age=31536000")])
