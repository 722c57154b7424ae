"""Model outputs and questions as safe HTML: Markdown (with fenced code) rendered, then sanitised by
nh3 to an allow-list, so raw HTML in an output is shown as text or dropped, never run."""

from __future__ import annotations

import html

import markdown
import nh3

ALLOWED_TAGS = {"p", "br", "pre", "code", "em", "strong", "ul", "ol", "li", "blockquote", "h1", "h2", "h3",
                "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "a"}  # fmt: skip


def render_markdown(text: str) -> str:
    # Escaping first turns any HTML the model wrote into visible text; Markdown still works on it.
    rendered = markdown.markdown(html.escape(text or "", quote=False), extensions=["fenced_code", "tables"])
    return nh3.clean(rendered, tags=ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https"})
