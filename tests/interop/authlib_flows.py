#!/usr/bin/env python3
"""Drives a running Tollgate with Authlib's OAuth 2.0 client (a library nobody here wrote).

Started by tests/interop.rs, which runs Redis, an upstream and the gateway and passes:
  TOLLGATE_URL      the gateway's public URL (= its public_url, the issuer)
  CLIENT_ID/SECRET  a confidential client allowed every grant, scopes reports + secret
  PUBLIC_CLIENT_ID  a public client (code + refresh, PKCE)
  IMPLICIT_CLIENT_ID a public client allowed the implicit grant
  USERNAME/PASSWORD a resource owner allowed reports + secret
  REDIRECT_URI      registered for all three clients
  PROTECTED_PATH    a path under the `reports` scope; FORBIDDEN_PATH one under `secret`

Every flow: client_credentials, password, refresh with rotation (explicit and Authlib's
automatic refresh of an expired token), authorization code + PKCE S256 for a confidential
and a public client, implicit, revocation and introspection, each followed by a protected
call through the gateway. The login and consent pages are walked with requests (as a
browser would post them); Authlib then takes the callback URL. Exits non-zero with a
message on the first failure.
"""

import html.parser
import os
import sys
import time
import traceback
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"interop: environment variable {name} is not set")
    return value


BASE = env("TOLLGATE_URL").rstrip("/")
CLIENT_ID, CLIENT_SECRET = env("CLIENT_ID"), env("CLIENT_SECRET")
PUBLIC_CLIENT_ID = env("PUBLIC_CLIENT_ID")
IMPLICIT_CLIENT_ID = env("IMPLICIT_CLIENT_ID")
USERNAME, PASSWORD = env("USERNAME"), env("PASSWORD")
REDIRECT_URI = env("REDIRECT_URI")
PROTECTED = BASE + env("PROTECTED_PATH")
FORBIDDEN = BASE + env("FORBIDDEN_PATH")
TIMEOUT = 15


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def describe(resp):
    return f"{resp.status_code} {dict(resp.headers)} {resp.text[:500]!r}"


class Forms(html.parser.HTMLParser):
    """Collects each <form>'s action and its <input> attributes."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attrs)


def form_posting_to(page, path):
    parser = Forms()
    parser.feed(page.text)
    for form in parser.forms:
        if urlsplit(form["action"]).path.endswith(path):
            return form
    raise Failure(f"no form posting to {path} in {describe(page)}")


def hidden_fields(form):
    return [
        (i["name"], i.get("value", ""))
        for i in form["inputs"]
        if i.get("type", "").lower() == "hidden" and "name" in i
    ]


def user_agent_journey(authorize_url, tick=None):
    """Logs in and grants on the HTML pages; returns the URL the gateway sends the
    browser back to (the callback with the code or the token)."""
    browser = requests.Session()
    page = browser.get(authorize_url, allow_redirects=False, timeout=TIMEOUT)
    check(page.status_code == 200, f"login page: {describe(page)}")
    login = form_posting_to(page, "/oauth/login")
    fields = hidden_fields(login) + [("username", USERNAME), ("password", PASSWORD)]
    resp = browser.post(urljoin(page.url, login["action"]), data=fields,
                        allow_redirects=False, timeout=TIMEOUT)
    check(resp.status_code == 303, f"login: {describe(resp)}")
    consent_url = urljoin(resp.url, resp.headers["Location"])
    page = browser.get(consent_url, allow_redirects=False, timeout=TIMEOUT)
    check(page.status_code == 200, f"consent page: {describe(page)}")
    consent = form_posting_to(page, "/oauth/consent")
    if tick is None:
        tick = [i["value"] for i in consent["inputs"]
                if i.get("type") == "checkbox" and "checked" in i]
    fields = hidden_fields(consent) + [("scope", s) for s in tick] + [("decision", "grant")]
    resp = browser.post(urljoin(consent_url, consent["action"]), data=fields,
                        allow_redirects=False, timeout=TIMEOUT)
    check(resp.status_code == 303, f"consent: {describe(resp)}")
    back = resp.headers["Location"]
    check(back.startswith(REDIRECT_URI), f"redirected to {back}, not {REDIRECT_URI}")
    return back


def expect_status(session, url, status, what):
    resp = session.get(url, timeout=TIMEOUT)
    check(resp.status_code == status, f"{what}: GET {url}: {describe(resp)}")


def discover():
    resp = requests.get(BASE + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    check(resp.status_code == 200, f"metadata: {describe(resp)}")
    meta = resp.json()
    check(meta.get("issuer") == BASE, f"issuer {meta.get('issuer')!r}, want {BASE!r}")
    for key in ("authorization_endpoint", "token_endpoint", "revocation_endpoint",
                "introspection_endpoint"):
        check(str(meta.get(key, "")).startswith(BASE + "/"), f"{key} in {meta}")
    check("S256" in meta.get("code_challenge_methods_supported", []), f"PKCE in {meta}")
    return meta


def client_credentials(meta):
    s = OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope="reports")
    token = s.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    check(token.get("token_type") == "Bearer", f"token_type in {token}")
    check("refresh_token" not in token, f"client_credentials issued a refresh token: {token}")
    expect_status(s, PROTECTED, 200, "client_credentials token")
    expect_status(s, FORBIDDEN, 403, "client_credentials token outside its scope")


def password_and_refresh(meta):
    updates = []
    s = OAuth2Session(
        CLIENT_ID, CLIENT_SECRET, scope="reports",
        token_endpoint=meta["token_endpoint"],
        update_token=lambda token, **_: updates.append(dict(token)),
    )
    first = dict(s.fetch_token(meta["token_endpoint"], username=USERNAME, password=PASSWORD))
    check("refresh_token" in first, f"password grant without refresh token: {first}")
    expect_status(s, PROTECTED, 200, "password token")

    second = dict(s.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"]))
    check(second["refresh_token"] != first["refresh_token"], "refresh token not rotated")
    check(second["access_token"] != first["access_token"], "access token not renewed")
    expect_status(s, PROTECTED, 200, "refreshed token")

    # Authlib refreshes an expired token by itself before a call, and reports the result.
    s.token = dict(s.token, expires_at=int(time.time()) - 120)
    expect_status(s, PROTECTED, 200, "call after Authlib's automatic refresh")
    check(updates, "Authlib did not refresh the expired token")
    third = updates[-1]
    check(third["refresh_token"] not in (first["refresh_token"], second["refresh_token"]),
          "automatic refresh did not rotate the refresh token")
    return s, third


def code_flow_confidential(meta):
    s = OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope="reports secret",
                      redirect_uri=REDIRECT_URI, code_challenge_method="S256")
    verifier = generate_token(64)
    url, state = s.create_authorization_url(meta["authorization_endpoint"],
                                            code_verifier=verifier)
    back = user_agent_journey(url, tick=["reports"])
    token = s.fetch_token(meta["token_endpoint"], authorization_response=back,
                          state=state, code_verifier=verifier)
    check(token.get("scope") == "reports", f"unticked scope granted: {token}")
    check("refresh_token" in token, f"code grant without refresh token: {token}")
    expect_status(s, PROTECTED, 200, "code-flow token")
    expect_status(s, FORBIDDEN, 403, "code-flow token on the unticked scope")
    return s, token


def code_flow_public(meta):
    s = OAuth2Session(PUBLIC_CLIENT_ID, scope="reports", redirect_uri=REDIRECT_URI,
                      code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(64)
    url, state = s.create_authorization_url(meta["authorization_endpoint"],
                                            code_verifier=verifier)
    back = user_agent_journey(url)
    token = s.fetch_token(meta["token_endpoint"], authorization_response=back,
                          state=state, code_verifier=verifier)
    expect_status(s, PROTECTED, 200, "public-client token")
    renewed = s.refresh_token(meta["token_endpoint"])
    check(renewed["refresh_token"] != token["refresh_token"], "public refresh not rotated")
    expect_status(s, PROTECTED, 200, "public-client refreshed token")


def implicit_flow(meta):
    s = OAuth2Session(IMPLICIT_CLIENT_ID, scope="reports", redirect_uri=REDIRECT_URI)
    url, state = s.create_authorization_url(meta["authorization_endpoint"],
                                            response_type="token")
    back = user_agent_journey(url)
    check("#" in back and "?" not in back.split("#")[0][len(REDIRECT_URI):],
          f"implicit answer not in the fragment: {back}")
    token = s.fetch_token(authorization_response=back, state=state)
    check("refresh_token" not in token, f"implicit issued a refresh token: {token}")
    expect_status(s, PROTECTED, 200, "implicit token")


def revoke_and_introspect(meta, s, token):
    info = s.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
    check(info.status_code == 200, f"introspect: {describe(info)}")
    body = info.json()
    check(body.get("active") is True, f"live token inactive: {body}")
    check(body.get("client_id") == CLIENT_ID and body.get("username") == USERNAME, f"{body}")
    resp = s.revoke_token(meta["revocation_endpoint"], token=token["refresh_token"],
                          token_type_hint="refresh_token")
    check(resp.status_code == 200, f"revoke: {describe(resp)}")
    deadline = time.time() + 2
    while True:
        status = s.get(PROTECTED, timeout=TIMEOUT).status_code
        if status == 401:
            break
        check(time.time() < deadline, f"access token still works ({status}) after revocation")
        time.sleep(0.05)
    body = s.introspect_token(meta["introspection_endpoint"],
                              token=token["access_token"]).json()
    check(body == {"active": False}, f"revoked token introspects as {body}")


def main():
    steps = []
    meta = discover()
    steps.append("metadata")
    client_credentials(meta)
    steps.append("client_credentials")
    password_and_refresh(meta)
    steps.append("password + refresh (explicit and automatic, rotated)")
    s, token = code_flow_confidential(meta)
    steps.append("authorization code + PKCE (confidential)")
    code_flow_public(meta)
    steps.append("authorization code + PKCE (public) + refresh")
    implicit_flow(meta)
    steps.append("implicit")
    revoke_and_introspect(meta, s, token)
    steps.append("introspection + revocation")
    for step in steps:
        print(f"ok: {step}")
    print(f"interop: all {len(steps)} flows work with Authlib")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # any failure: say what and where, exit non-zero
        traceback.print_exc()
        print(f"interop FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
