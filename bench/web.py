"""An author's browser, as far as the benchmark needs one: log in through the login form, then
click the wand (an HTMX POST to the page's generate URL with the session cookie, the CSRF token
and the editor's form fields). Standard library only; one TCP connection per request."""

from __future__ import annotations

import hashlib
import http.client
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

JOB_URL = re.compile(r"/stories/pages/(?P<page>\d+)/jobs/(?P<job>\d+)/")
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="(?P<token>[^"]+)"')


@dataclass
class Click:
    page_id: int
    status: int
    seconds: float  # POST sent -> response read
    job_id: int | None
    started_wall: float  # time.time() when the POST was sent
    started: float  # time.perf_counter() when the POST was sent


@dataclass
class Browser:
    base_url: str
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def _host_port(self) -> tuple[str, int]:
        parsed = urllib.parse.urlsplit(self.base_url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80

    def _request(
        self, method: str, path: str, body: dict[str, str] | None = None, headers=None
    ) -> tuple[int, dict[str, str], str]:
        host, port = self._host_port
        conn = http.client.HTTPConnection(host, port, timeout=60)
        all_headers = {"Host": f"{host}:{port}", **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            for value in response.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie()
                jar.load(value)
                for name, morsel in jar.items():
                    self.cookies[name] = morsel.value
            return response.status, dict(response.headers), text
        finally:
            conn.close()

    def login(self, username: str, password: str) -> None:
        status, _, page = self._request("GET", "/accounts/login/")
        match = _CSRF_INPUT.search(page)
        if status != 200 or not match:
            raise RuntimeError(f"login page: HTTP {status}")
        status, headers, _ = self._request(
            "POST",
            "/accounts/login/",
            {"username": username, "password": password, "csrfmiddlewaretoken": match["token"]},
            {"Referer": f"{self.base_url}/accounts/login/"},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login failed: HTTP {status} {headers.get('Location')}")

    def click_generate(self, page_id: int, content: str = "") -> Click:
        """The wand: the editor's form (content + fingerprint) posted by HTMX."""
        base = hashlib.sha256(content.encode()).hexdigest()[:16]
        token = self.cookies["csrftoken"]
        form = {"csrfmiddlewaretoken": token, "base": base, "content": content}
        headers = {
            "HX-Request": "true",
            "HX-Current-URL": f"{self.base_url}/stories/",
            "X-CSRFToken": token,
            "Referer": f"{self.base_url}/stories/",
        }
        wall = time.time()
        started = time.perf_counter()
        url = f"/stories/pages/{page_id}/generate/"
        status, _, text = self._request("POST", url, form, headers)
        seconds = time.perf_counter() - started
        match = JOB_URL.search(text)
        return Click(
            page_id=page_id,
            status=status,
            seconds=seconds,
            job_id=int(match["job"]) if match else None,
            started_wall=wall,
            started=started,
        )
