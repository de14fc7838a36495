"""JWT verification against a PEM public key or a JWKS file: what is accepted and the principal it
makes, each way a token is refused (with the reason logged, never the token), key rotation by
reload, configuration errors, and a JWT through the HTTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import actorstate
from actorstate.transport.caller import principal_key
from actorstate.transport.jwt_verifier import JwtVerifier
from actorstate.transport.tokens import Principal
from tests.transport.test_http import call, client, http_server

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

ISSUER = "https://id.example.com/"
AUDIENCE = "https://actorstate.example.com/mcp"


class Keys:
    """Key pairs for the tests, and files of their public halves under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem(self, key: Any, name: str = "key.pem") -> Path:
        path = self.directory / name
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return path

    def jwks(self, *entries: tuple[Any, str | None], name: str = "jwks.json") -> Path:
        """A JWKS file of the public halves of ``(private key, kid)`` pairs."""
        keys = []
        for key, kid in entries:
            reader = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
            jwk = reader.to_jwk(key.public_key(), as_dict=True)
            jwk["use"] = "sig"
            if kid is not None:
                jwk["kid"] = kid
            keys.append(jwk)
        path = self.directory / name
        path.write_text(json.dumps({"keys": keys}))
        return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for alice, changed by ``changes`` (a value of None removes the claim)."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(key: Any, payload: dict[str, Any], kid: str | None = "r1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: Callable[[bytes], bytes]) -> str:
    """A token built by hand: ``signature`` signs the signing input however the attacker likes."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(signature(signing_input.encode()))}"


def pem_verifier(keys: Keys, **options: Any) -> JwtVerifier:
    return JwtVerifier(ISSUER, AUDIENCE, key_file=keys.pem(keys.rsa), **options)


def jwks_verifier(keys: Keys) -> JwtVerifier:
    return JwtVerifier(ISSUER, AUDIENCE, jwks_file=keys.jwks((keys.rsa, "r1"), (keys.ec, "e1")))


# -- accepted ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_valid_token_becomes_the_access_token_of_its_principal(keys: Keys) -> None:
    """A token signed with the PEM key: subject, client (azp), scopes, expiry (plus the leeway),
    audience and issuer land in the AccessToken, and its principal key is (iss, sub, azp)'s."""
    payload = claims(azp="notes-app", scope="sessions:read sessions:write")
    token = sign(keys.rsa, payload)
    access = await pem_verifier(keys).verify_token(token)
    assert access is not None
    assert (access.token, access.subject, access.client_id) == (token, "alice", "notes-app")
    assert access.scopes == ["sessions:read", "sessions:write"]
    # With the leeway: the SDK's middleware compares expires_at to its clock itself.
    assert access.expires_at == payload["exp"] + 30
    assert access.resource == AUDIENCE
    assert access.claims is not None
    assert access.claims["iss"] == ISSUER
    assert principal_key(access) == Principal(ISSUER, "alice", "notes-app").key
    assert principal_key(access) == "https://id.example.com/|alice|notes-app"


@pytest.mark.anyio
async def test_the_jwks_key_is_picked_by_kid(keys: Keys) -> None:
    """An RS256 token with kid r1 and an ES256 token with kid e1 both verify against one JWKS; the
    client is the client_id claim, else the subject; an audience list naming ours is accepted."""
    verifier = jwks_verifier(keys)
    by_rsa = await verifier.verify_token(sign(keys.rsa, claims(client_id="cli"), kid="r1"))
    by_ec = await verifier.verify_token(
        sign(keys.ec, claims(sub="bob", aud=["other", AUDIENCE]), kid="e1", alg="ES256")
    )
    assert by_rsa is not None
    assert by_ec is not None
    assert (by_rsa.subject, by_rsa.client_id) == ("alice", "cli")
    assert (by_ec.subject, by_ec.client_id, by_ec.scopes) == ("bob", "bob", [])


@pytest.mark.anyio
async def test_clock_skew_within_the_leeway_is_tolerated(keys: Keys) -> None:
    """Expired 10 s ago and valid from 10 s ahead pass with the default 30 s leeway; with no leeway
    both are refused."""
    now = int(time.time())
    late = sign(keys.rsa, claims(exp=now - 10))
    early = sign(keys.rsa, claims(nbf=now + 10, iat=now + 10))
    lenient, strict = pem_verifier(keys), pem_verifier(keys, leeway=0)
    assert await lenient.verify_token(late) is not None
    assert await lenient.verify_token(early) is not None
    assert await strict.verify_token(late) is None
    assert await strict.verify_token(early) is None


# -- refused -------------------------------------------------------------------------------------


def _tampered(keys: Keys) -> str:
    header, _, signature = sign(keys.rsa, claims()).split(".")
    return f"{header}.{b64(json.dumps(claims(sub='mallory')).encode())}.{signature}"


def _hs256_with_public_key(keys: Keys) -> str:
    """The algorithm-confusion attack: HMAC "signed" with the public PEM, which anyone has."""
    secret = keys.pem(keys.rsa, "confusion.pem").read_bytes()
    return raw_token(
        {"alg": "HS256", "typ": "JWT", "kid": "r1"},
        claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )


REFUSED: dict[str, tuple[Callable[[Keys], str], str]] = {
    "expired": (lambda k: sign(k.rsa, claims(exp=int(time.time()) - 120)), "expired"),
    "not yet valid": (lambda k: sign(k.rsa, claims(nbf=int(time.time()) + 120)), "not yet valid"),
    "issued in the future": (lambda k: sign(k.rsa, claims(iat=int(time.time()) + 120)), "not yet valid"),
    "no exp": (lambda k: sign(k.rsa, claims(exp=None)), 'missing the "exp" claim'),
    "wrong issuer": (lambda k: sign(k.rsa, claims(iss="https://evil.example.com/")), "Invalid issuer"),
    "issuer prefix": (lambda k: sign(k.rsa, claims(iss="https://id.example.com")), "Invalid issuer"),
    "tokens-file issuer": (lambda k: sign(k.rsa, claims(iss="tokens-file")), "Invalid issuer"),
    "wrong audience": (
        lambda k: sign(k.rsa, claims(aud="https://other.example.com")),
        "Audience doesn't match",
    ),
    "no audience": (lambda k: sign(k.rsa, claims(aud=None)), 'missing the "aud" claim'),
    "no sub": (lambda k: sign(k.rsa, claims(sub=None)), 'missing the "sub" claim'),
    "empty sub": (lambda k: sign(k.rsa, claims(sub="")), "sub is not a non-empty string"),
    "azp and client_id differ": (
        lambda k: sign(k.rsa, claims(azp="a", client_id="b")),
        "azp and client_id name different clients",
    ),
    "signed by another key": (lambda k: sign(k.other_rsa, claims()), "Signature verification failed"),
    "alg none": (lambda k: raw_token({"alg": "none"}, claims(), lambda _: b""), "alg 'none' is not allowed"),
    "HS256 with the public key as secret": (_hs256_with_public_key, "alg 'HS256' is not allowed"),
    "tampered payload": (_tampered, "Signature verification failed"),
    "alg that does not fit the key": (
        lambda k: sign(k.ec, claims(), alg="ES256"),
        "alg ES256 does not fit the key",
    ),
    "garbage": (lambda k: "Zm9v" * 10 + ".bm90LWpzb24tYXQtYWxs.c2lnbmF0dXJl", "Invalid header"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", REFUSED)
async def test_a_bad_token_is_refused_with_the_reason_logged(
    keys: Keys, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad token gets None from the PEM verifier; a DEBUG line says why without the token."""
    make, reason = REFUSED[case]
    token = make(keys)
    verifier = pem_verifier(keys)
    with caplog.at_level(logging.DEBUG, logger="actorstate.transport.jwt_verifier"):
        assert await verifier.verify_token(token) is None
    assert reason in caplog.text
    assert token not in caplog.text
    assert token.split(".")[1] not in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kid", "reason"),
    [("r9", "kid 'r9' is not in the JWKS"), (None, "the token has no kid and the JWKS holds 2 keys")],
)
async def test_a_kid_the_jwks_does_not_name_is_refused(
    keys: Keys, kid: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A kid not in the set, or no kid while the set has several keys: refused, though the key
    that signed it is in the set; a one-key set takes a token without kid."""
    token = sign(keys.rsa, claims(), kid=kid)
    with caplog.at_level(logging.DEBUG, logger="actorstate.transport.jwt_verifier"):
        assert await jwks_verifier(keys).verify_token(token) is None
    assert reason in caplog.text
    single = JwtVerifier(ISSUER, AUDIENCE, jwks_file=keys.jwks((keys.rsa, "r1"), name="one.json"))
    assert await single.verify_token(sign(keys.rsa, claims(), kid=None)) is not None


# -- reload --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reload_takes_a_rotated_jwks_and_keeps_the_old_one_when_the_file_turns_bad(
    keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After the provider rotates r1 out for r2, reload accepts r2's tokens and no longer r1's; a
    corrupted file is then refused with a WARNING and r2 keeps working."""
    keys.directory = tmp_path
    path = keys.jwks((keys.rsa, "r1"))
    verifier = JwtVerifier(ISSUER, AUDIENCE, jwks_file=path)
    old, new = sign(keys.rsa, claims(), kid="r1"), sign(keys.other_rsa, claims(), kid="r2")
    assert await verifier.verify_token(old) is not None
    assert await verifier.verify_token(new) is None
    keys.jwks((keys.other_rsa, "r2"))
    assert verifier.reload()
    assert await verifier.verify_token(new) is not None
    assert await verifier.verify_token(old) is None
    for corrupt in ("{not json", '{"keys": []}'):
        path.write_text(corrupt)
        with caplog.at_level(logging.WARNING, logger="actorstate.transport.jwt_verifier"):
            assert not verifier.reload()
        assert "kept the 1 JWT key(s) loaded before" in caplog.text
        assert str(path) in caplog.text
        assert await verifier.verify_token(new) is not None
    path.unlink()
    assert not verifier.reload()
    assert await verifier.verify_token(new) is not None


def test_reload_of_a_pem_key(keys: Keys, tmp_path: Path) -> None:
    """Replacing the PEM file with another key and reloading switches the key; a file that is not
    PEM leaves the current key in use."""
    keys.directory = tmp_path
    verifier = JwtVerifier(ISSUER, AUDIENCE, key_file=keys.pem(keys.rsa))
    assert verifier.verify(sign(keys.rsa, claims())) is not None
    keys.pem(keys.other_rsa)
    assert verifier.reload()
    assert verifier.verify(sign(keys.other_rsa, claims())) is not None
    assert verifier.verify(sign(keys.rsa, claims())) is None
    (tmp_path / "key.pem").write_text("garbage")
    assert not verifier.reload()
    assert verifier.verify(sign(keys.other_rsa, claims())) is not None


# -- configuration errors ------------------------------------------------------------------------


def _private_pem(keys: Keys) -> dict[str, Any]:
    path = keys.directory / "private.pem"
    path.write_bytes(
        keys.rsa.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {"key_file": path}


def _short_rsa(keys: Keys) -> dict[str, Any]:
    return {"key_file": keys.pem(rsa.generate_private_key(public_exponent=65537, key_size=1024), "short.pem")}


def _jwks_text(keys: Keys, text: str) -> dict[str, Any]:
    path = keys.directory / "bad.json"
    path.write_text(text)
    return {"jwks_file": path}


def _private_jwk(keys: Keys) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(keys.rsa, as_dict=True)
    return _jwks_text(keys, json.dumps({"keys": [jwk]}))


def _duplicate_kid(keys: Keys) -> dict[str, Any]:
    return {"jwks_file": keys.jwks((keys.rsa, "k"), (keys.other_rsa, "k"), name="dup.json")}


BAD_CONFIG: dict[str, tuple[Callable[[Keys], dict[str, Any]], str]] = {
    "neither file": (lambda k: {}, "give exactly one of --jwt-key"),
    "both files": (
        lambda k: {"key_file": k.pem(k.rsa), "jwks_file": k.jwks((k.rsa, "r1"))},
        "give exactly one of --jwt-key",
    ),
    "missing key file": (
        lambda k: {"key_file": k.directory / "nope.pem"},
        r"--jwt-key .*nope\.pem: no such file",
    ),
    "missing jwks file": (
        lambda k: {"jwks_file": k.directory / "nope.json"},
        r"--jwt-jwks .*nope\.json: no such",
    ),
    "not PEM": (
        lambda k: {"key_file": k.jwks((k.rsa, "r1"), name="not.pem")},
        r"--jwt-key .*not\.pem is not PEM",
    ),
    "private PEM": (_private_pem, r"private\.pem holds a private key"),
    "short RSA key": (_short_rsa, "RSA key of 1024 bits"),
    "key no algorithm fits": (
        lambda k: {"key_file": k.pem(k.ec, "ec.pem"), "algorithms": ["RS256"]},
        "holds an EC key on secp256r1, which none of the allowed algorithms",
    ),
    "jwks not JSON": (lambda k: _jwks_text(k, "{"), r"bad\.json is not JSON"),
    "jwks not a set": (
        lambda k: _jwks_text(k, "[]"),
        r'bad\.json is not a JWKS: expected an object \{"keys"',
    ),
    "empty jwks": (lambda k: _jwks_text(k, '{"keys": []}'), r"bad\.json has no key that verifies"),
    "private jwk": (_private_jwk, r"keys\[0\] holds a private or secret key"),
    "secret jwk": (
        lambda k: _jwks_text(k, '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'),
        "holds a private or secret key",
    ),
    "duplicate kid": (_duplicate_kid, "has two keys with kid 'k'"),
    "tokens-file issuer": (lambda k: {"issuer": "tokens-file"}, "is not an absolute http"),
    "issuer without scheme": (lambda k: {"issuer": "id.example.com"}, "--jwt-issuer 'id.example.com' is not"),
    "issuer of another scheme": (lambda k: {"issuer": "urn:example:idp"}, "is not an absolute http"),
    "issuer not a URL": (lambda k: {"issuer": "https://[::1"}, "is not an absolute http"),
    "empty audience": (lambda k: {"audience": ""}, "--jwt-audience is empty"),
    "HS256 allowed": (lambda k: {"algorithms": ["RS256", "HS256"]}, "'HS256' not allowed"),
    "none allowed": (lambda k: {"algorithms": ["none"]}, "'none' not allowed"),
    "no algorithms": (lambda k: {"algorithms": []}, "--jwt-algorithms is empty"),
}


@pytest.mark.parametrize("case", BAD_CONFIG)
def test_bad_configuration_is_refused_at_construction(keys: Keys, case: str) -> None:
    """Each bad setting raises ValueError naming the file or the flag at fault."""
    make, message = BAD_CONFIG[case]
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE}
    changes = make(keys)
    if not {"key_file", "jwks_file"} & changes.keys() and case != "neither file":
        options["key_file"] = keys.pem(keys.rsa)
    options |= changes
    with pytest.raises(ValueError, match=message):
        JwtVerifier(**options)


# -- through HTTP --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)
async def test_a_jwt_creates_a_session_over_http_and_an_expired_one_gets_401(keys: Keys) -> None:
    """Served with the JWT verifier: a valid token creates a session owned by its principal (iss,
    sub, azp); an expired token is refused with 401 and a Bearer WWW-Authenticate."""
    verifier = jwks_verifier(keys)
    valid = sign(keys.rsa, claims(azp="notes-app"), kid="r1")
    expired = sign(keys.rsa, claims(exp=int(time.time()) - 120), kid="r1")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with actorstate.open_state() as state, http_server(state, verifier=verifier) as url:
        async with client(url, valid) as alice:
            error, created = await call(alice, "create_session", {})
            assert not error
        owner = Principal(ISSUER, "alice", "notes-app").key
        context = await state.session(created["sessionId"], owner).context()
        assert context["sessionId"] == created["sessionId"]
        async with httpx2.AsyncClient() as http:
            reply = await http.post(
                url,
                json=body,
                headers={
                    "Authorization": f"Bearer {expired}",
                    "Accept": "application/json, text/event-stream",
                },
            )
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]


@pytest.mark.anyio
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)
async def test_the_leeway_holds_over_http_too(keys: Keys) -> None:
    """A token expired 10 s ago is within the 30 s leeway: the HTTP server (whose bearer middleware
    checks expires_at itself) serves it, not only the verifier."""
    verifier = jwks_verifier(keys)
    recently_expired = sign(keys.rsa, claims(exp=int(time.time()) - 10), kid="r1")
    async with actorstate.open_state() as state, http_server(state, verifier=verifier) as url:
        async with client(url, recently_expired) as alice:
            error, created = await call(alice, "create_session", {})
    assert not error
    assert created["sessionId"]
