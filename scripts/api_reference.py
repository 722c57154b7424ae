"""Write docs/api.md from the OpenAPI schemas the running code serves (native, OpenAI- and
MLflow-compatible APIs), so the reference cannot drift: `tests/test_docs.py` checks it is current.

    .venv/bin/python scripts/api_reference.py          # rewrite docs/api.md
    .venv/bin/python scripts/api_reference.py --check  # exit 1 when docs/api.md is stale
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "api.md"

HEADER = """# API reference

Generated from the code by `scripts/api_reference.py` (a test fails when this file is stale); the
interactive version with request and response schemas is served at `/api/v1/docs`. Authenticate with
`Authorization: Bearer <token>` (`manage.py create_api_token <user>`, or the admin). Errors always look
like `{"error": {"code", "message", "details"}}` with a 4xx status; records of other owners answer 404
like missing ones. Worker-only endpoints take the per-job worker token, not a user token.
"""


def _apis():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "t4dm_site.settings")
    import django

    django.setup()
    from django.urls import URLResolver
    from ninja import NinjaAPI

    from t4dm_site import urls

    apis = {a.urls_namespace: a for a in vars(urls).values() if isinstance(a, NinjaAPI)}
    found = []
    for pattern in urls.urlpatterns:
        if isinstance(pattern, URLResolver) and pattern.namespace in apis:
            found.append((str(pattern.pattern), apis[pattern.namespace]))
    return found


def render() -> str:
    out = [HEADER]
    for prefix, api in _apis():
        schema = api.get_openapi_schema(path_prefix="/" + prefix)
        out.append(f"\n## {schema['info']['title']} (`/{prefix}`)")
        rows: dict[str, list[tuple[str, str, str]]] = {}
        for path, methods in sorted(schema["paths"].items()):
            for method, op in methods.items():
                tag = (op.get("tags") or ["other"])[0]
                described = (op.get("description") or "").strip().split("\n\n")[0].replace("\n", " ")
                summary = (described or op.get("summary") or "").replace("|", "\\|")
                rows.setdefault(tag, []).append((method.upper(), path, summary))
        for tag in sorted(rows):
            out.append(f"\n### {tag}\n\n| method | path | what |\n|---|---|---|")
            out.extend(f"| {m} | `{p}` | {s} |" for m, p, s in rows[tag])
            out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print("docs/api.md is stale: run .venv/bin/python scripts/api_reference.py", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
