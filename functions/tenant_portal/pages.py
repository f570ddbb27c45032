"""Rendering: Jinja2 templates (one base layout), the de/en message catalogues, the language choice
(`?lang=de|en`, else `Accept-Language`, default English) and the security headers of every response."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from flask import Request, Response

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"


@functools.cache
def catalogues() -> dict[str, dict[str, str]]:
    """{language: {key: text}} from messages/{en,de}.json (both must hold the same keys; a test checks)."""
    return {lang: json.loads((HERE / "messages" / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}


@functools.cache
def environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def choose_language(query_lang: str | None, accept_language: str | None) -> tuple[str, bool]:
    """(language, whether the request chose it explicitly with ?lang=)."""
    if query_lang in LANGUAGES:
        return query_lang, True
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for part in (accept_language or "")[:512].split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            q = 0.0
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best, False


class Page:
    """What every template gets: the language, translations, links that keep an explicit language."""

    def __init__(self, request: Request, lang: str, explicit: bool):
        self.request = request
        self.lang = lang
        self.explicit = explicit
        # The query parameters the page's route declares (the handler sets them once it has matched a route):
        # all a language link keeps. A callback's code, state or session_state is never copied into a link.
        self.keep_query: tuple[str, ...] = ()
        # Where a language link leads instead of this path (a callback cannot be loaded again: the start page).
        self.switch_path: str | None = None

    def in_language(self, lang: str) -> Page:
        """This page in `lang`, chosen explicitly (e.g. the language chosen before leaving for Microsoft)."""
        chosen = Page(self.request, lang, True)
        chosen.keep_query, chosen.switch_path = self.keep_query, self.switch_path
        return chosen

    def t(self, key: str, **values: Any) -> str:
        text = catalogues()[self.lang].get(key) or catalogues()[DEFAULT_LANGUAGE].get(key) or key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in catalogues()[self.lang]

    def href(self, path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if self.explicit:
            query["lang"] = self.lang
        return path + ("?" + urlencode(query) if query else "")

    def switch(self, lang: str) -> str:
        """This page in `lang` (the query parameters its route declares kept): a percent-encoded path on this
        site, whatever the request's path holds (browsers read a backslash as a slash, so `/\\evil.example`
        would otherwise be a link to another site)."""
        query = {k: v for k, v in self.request.args.items(multi=False) if k in self.keep_query and k != "lang"}
        query["lang"] = lang
        return site_path(self.switch_path or self.request.path) + "?" + urlencode(query)


def site_path(path: str) -> str:
    """`path` as a link to a path of this site: percent-encoded but for unreserved characters, sub-delimiters
    that need no encoding in a path, `:` `@` and `/`, and never starting with `//` (another host)."""
    encoded = quote(path, safe="/!$&'()*+,;=:@-._~")
    encoded = encoded if encoded.startswith("/") else "/" + encoded
    return "/%2F" + encoded[2:] if encoded.startswith("//") else encoded


def security_headers(response: Response, form_action: str, signed_in: bool) -> Response:
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
        f"base-uri 'none'; form-action 'self' {form_action}; frame-ancestors 'none'")
    response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if signed_in or "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def render(page: Page, template: str, status: int = 200, **context: Any) -> Response:
    html = environment().get_template(template).render(page=page, t=page.t, href=page.href, lang=page.lang,
                                                       **context)
    response = Response(html, status=status, content_type="text/html; charset=utf-8")
    response.headers["Content-Language"] = page.lang
    return response
