"""JWT bearer tokens for the HTTP server: verified against a public key or a JWKS file.

An identity provider signs access tokens with its private key; the server
holds only the public half, given as a PEM file (``--jwt-key``) or as a JSON
Web Key Set file (``--jwt-jwks``, the provider's ``jwks_uri`` document saved
to disk). Nothing is fetched over the network: rotating keys means replacing
the file and sending SIGHUP (:meth:`JwtVerifier.reload`).

A token is accepted when all of these hold:

* its ``alg`` is one of the configured public-key algorithms (never ``none``,
  never an HMAC one) and fits the key that verifies it;
* the signature verifies with the key: the only key of a PEM file, or the
  JWKS key its ``kid`` names (a token without ``kid`` only when the set has a
  single key);
* ``iss`` equals the configured issuer exactly, ``aud`` names the configured
  audience, ``exp`` is present and not past, ``nbf`` and ``iat`` (when
  present) are not in the future, each with ``leeway`` seconds of clock skew;
* ``sub`` is a non-empty string.

The principal is (``iss``, ``sub``, client), the client being the ``azp``
or ``client_id`` claim, else the subject. The issuer must be an absolute
http(s) URL, so a JWT principal can never be a tokens-file one (whose issuer
is :data:`.tokens.TOKENS_FILE_ISSUER`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from mcp.server.auth.provider import AccessToken

from .authentication import ReloadNotices
from .quoting import clipped_repr
from .tokens import TOKENS_FILE_ISSUER

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

__all__ = ["DEFAULT_ALGORITHMS", "JwtVerifier"]

logger = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
# Public-key algorithms only. HS256 and its kin are left out on purpose: with
# a shared secret the server could mint tokens for anyone, a leaked server
# config would be a leaked identity provider, and allowing HMAC next to
# public keys is the classic algorithm-confusion hole (a token "signed" with
# HS256 using the public key, which everyone has, as the secret).
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
ALLOWED_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHMS.values()) | {"EdDSA"}
MIN_RSA_BITS = 2048
# A bearer token longer than this is refused before it is parsed.
MAX_TOKEN_CHARS = 16 * 1024
# The flags of `actorstate serve` these settings come from, named in errors.
KEY_FLAG, JWKS_FLAG, ISSUER_FLAG, AUDIENCE_FLAG = "--jwt-key", "--jwt-jwks", "--jwt-issuer", "--jwt-audience"
ALGORITHMS_FLAG = "--jwt-algorithms"


def _fitting(key: PublicKey) -> frozenset[str]:
    """The algorithms that verify with ``key``, by its type (and curve)."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _EC_ALGORITHMS.get(key.curve.name)
        return frozenset({name} if name else ())
    return frozenset({"EdDSA"})


def _kind(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key on {key.curve.name}"
    return "an Ed25519 key" if isinstance(key, ed25519.Ed25519PublicKey) else "an Ed448 key"


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    """A verifying key, its ``kid`` (None: none given) and the configured algorithms it serves."""

    kid: str | None
    key: PublicKey
    algorithms: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class _KeySet:
    """The keys of one load of the file. ``by_kid`` is None for a PEM file: its one key ignores ``kid``."""

    keys: tuple[_Key, ...]
    by_kid: dict[str, _Key] | None

    def pick(self, kid: object) -> _Key | str:
        """The key for a token with header ``kid`` (None: absent), or why there is none."""
        if self.by_kid is None:
            return self.keys[0]
        if kid is None:
            if len(self.keys) == 1:
                return self.keys[0]
            return f"the token has no kid and the JWKS holds {len(self.keys)} keys"
        found = self.by_kid.get(str(kid))
        return found if found is not None else f"kid {clipped_repr(kid)} is not in the JWKS"


def _check_issuer(issuer: str) -> str:
    try:
        parts = urlsplit(issuer)
        scheme, hostname = parts.scheme, parts.hostname
    except ValueError:  # such as an unclosed IPv6 bracket
        scheme, hostname = "", None
    if scheme not in ("https", "http") or not hostname or any(c.isspace() for c in issuer):
        raise ValueError(
            f"{ISSUER_FLAG} {issuer!r} is not an absolute http(s) URL: give the issuer exactly as "
            "the identity provider writes it in its tokens' iss claim, e.g. https://id.example.com/"
            + (
                f" ({TOKENS_FILE_ISSUER!r} is the tokens file's issuer)"
                if issuer == TOKENS_FILE_ISSUER
                else ""
            )
        )
    return issuer


def _check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(algorithms)
    if not chosen:
        raise ValueError(
            f"{ALGORITHMS_FLAG} is empty: allow at least one of {', '.join(sorted(ALLOWED_ALGORITHMS))}"
        )
    refused = sorted(chosen - ALLOWED_ALGORITHMS)
    if refused:
        raise ValueError(
            f"{ALGORITHMS_FLAG}: {', '.join(map(repr, refused))} not allowed: only public-key "
            f"algorithms are ({', '.join(sorted(ALLOWED_ALGORITHMS))}); none and the HMAC ones never"
        )
    return chosen


def _usable(where: str, key: object, algorithms: frozenset[str], restricted_to: str | None) -> _Key | str:
    """``key`` checked: a public key, long enough. Returns the key, or why it serves no configured algorithm.

    Error handling:
        ValueError: a private key, an unsupported key type, an RSA key under 2048 bits.
    """
    if isinstance(
        key,
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
    ):
        raise ValueError(f"{where} holds a private key: give the identity provider's public key only")
    if not isinstance(
        key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    ):
        raise ValueError(
            f"{where} holds a {type(key).__name__}, which cannot verify JWTs (RSA, EC, Ed25519 do)"
        )
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"{where} holds an RSA key of {key.key_size} bits: at least {MIN_RSA_BITS} are needed"
        )
    serves = _fitting(key) & algorithms
    if restricted_to is not None:
        serves &= {restricted_to}
    if not serves:
        limit = f' (its "alg" is {restricted_to!r})' if restricted_to is not None else ""
        return f"{where} holds {_kind(key)}{limit}, which none of the allowed algorithms ({', '.join(sorted(algorithms))}) verifies with"
    return _Key(None, key, serves)


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{flag} {path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{flag} {path} cannot be read ({error.strerror or error})") from None


def _load_pem(path: Path, algorithms: frozenset[str]) -> _KeySet:
    data = _read(path, KEY_FLAG)
    where = f"{KEY_FLAG} {path}"
    if b"-----BEGIN" not in data:
        raise ValueError(f"{where} is not PEM (expected -----BEGIN PUBLIC KEY-----)")
    if b"PRIVATE KEY-----" in data:
        raise ValueError(f"{where} holds a private key: give the identity provider's public key only")
    if b"-----BEGIN CERTIFICATE" in data:
        raise ValueError(
            f"{where} is a certificate, not a public key: extract its key with "
            f"openssl x509 -pubkey -noout -in {path}"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where} is not a PEM public key ({error})") from None
    usable = _usable(where, key, algorithms, None)
    if isinstance(usable, str):
        raise ValueError(usable)
    return _KeySet((usable,), None)


_JWK_READERS: dict[str, Any] = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}
# Private parameters: of RSA, EC and OKP keys ("d", "p", ...) and the secret of an "oct" key.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _load_jwks(path: Path, algorithms: frozenset[str]) -> _KeySet:
    data = _read(path, JWKS_FLAG)
    where = f"{JWKS_FLAG} {path}"
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{where} is not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f'{where} is not a JWKS: expected an object {{"keys": [...]}}')
    keys: list[_Key] = []
    by_kid: dict[str, _Key] = {}
    for index, jwk in enumerate(document["keys"]):
        at = f"{where}: keys[{index}]"
        if not isinstance(jwk, dict):
            raise ValueError(f"{at} is not an object")
        kid, kty, alg, use = jwk.get("kid"), jwk.get("kty"), jwk.get("alg"), jwk.get("use")
        if kid is not None:
            if not isinstance(kid, str):
                raise ValueError(f"{at}: kid is not a string")
            at = f"{at} (kid {kid!r})"
        if kty == "oct" or _PRIVATE_MEMBERS & jwk.keys():
            raise ValueError(f"{at} holds a private or secret key: the JWKS must hold public keys only")
        if use is not None and use != "sig":
            logger.warning("%s is skipped: its use is %r, not sig", at, use)
            continue
        if alg is not None and alg not in algorithms:
            logger.warning(
                "%s is skipped: its alg %r is not allowed (%s)", at, alg, ", ".join(sorted(algorithms))
            )
            continue
        reader = _JWK_READERS.get(kty) if isinstance(kty, str) else None
        if reader is None:
            logger.warning("%s is skipped: key type %s is not RSA, EC or OKP", at, clipped_repr(kty))
            continue
        try:
            key = reader.from_jwk(jwk)
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{at} is not a valid {kty} key ({error})") from None
        usable = _usable(at, key, algorithms, alg)
        if isinstance(usable, str):
            logger.warning("%s is skipped", usable)
            continue
        usable = dataclasses.replace(usable, kid=kid)
        if kid is not None:
            if kid in by_kid:
                raise ValueError(f"{where} has two keys with kid {kid!r}")
            by_kid[kid] = usable
        keys.append(usable)
    if not keys:
        raise ValueError(
            f"{where} has no key that verifies any of the allowed algorithms ({', '.join(sorted(algorithms))})"
        )
    return _KeySet(tuple(keys), by_kid)


class JwtVerifier:
    """Verifies bearer JWTs for the HTTP server (the SDK's ``TokenVerifier``); see the module docstring.

    Give exactly one of ``key_file`` (a PEM public key) and ``jwks_file`` (a
    JWKS document). :meth:`verify_token` may run while :meth:`reload` runs in
    another thread: a reload builds the new key set and swaps it in with one
    assignment.

    Error handling:
        The constructor raises ValueError naming the file or flag at fault:
        neither or both files, a missing or unreadable file, not PEM or not a
        JWKS, a private key, no usable key, an issuer that is not an absolute
        http(s) URL, an empty audience, a disallowed algorithm.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        key_file: str | os.PathLike[str] | None = None,
        jwks_file: str | os.PathLike[str] | None = None,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
    ) -> None:
        path = jwks_file if key_file is None else key_file
        if path is None or (key_file is not None and jwks_file is not None):
            raise ValueError(
                f"give exactly one of {KEY_FLAG} (a PEM public key) and {JWKS_FLAG} (a JWKS file)"
            )
        if not audience:
            raise ValueError(f"{AUDIENCE_FLAG} is empty: give the audience the tokens are issued for")
        if not 0 <= leeway <= 300:
            raise ValueError(f"JWT leeway {leeway} is not between 0 and 300 seconds")
        self.issuer = _check_issuer(issuer)
        self.audience = audience
        self.algorithms = _check_algorithms(algorithms)
        self.leeway = leeway
        self.path = Path(path)
        self._jwks = jwks_file is not None
        self._keys = self._load()
        # After a reload, open streams whose tokens the new keys refuse are closed (see .authentication).
        self.reloads = ReloadNotices()
        logger.info("loaded %d JWT verification key(s) from %s", len(self._keys.keys), self.path)

    def _load(self) -> _KeySet:
        if self._jwks:
            return _load_jwks(self.path, self.algorithms)
        return _load_pem(self.path, self.algorithms)

    def reload(self) -> bool:
        """Re-read the key or JWKS file. Returns whether the new keys were taken.

        If the file is now missing or invalid, the keys loaded before stay in
        use and a warning says why: a bad edit must not lock everyone out.
        """
        try:
            keys = self._load()
        except ValueError as error:
            logger.warning("kept the %d JWT key(s) loaded before: %s", len(self._keys.keys), error)
            return False
        self._keys = keys
        logger.info("loaded %d JWT verification key(s) from %s", len(keys.keys), self.path)
        return True

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token ``token`` stands for, or None (refused; a DEBUG log says why)."""
        return self.verify(token)

    def verify(self, token: str) -> AccessToken | None:
        """:meth:`verify_token`, synchronous."""
        refused = "refused a JWT: %s"
        if not token or len(token) > MAX_TOKEN_CHARS:
            logger.debug(refused, f"empty or longer than {MAX_TOKEN_CHARS} characters")
            return None
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg not in self.algorithms:
                logger.debug(refused, f"alg {clipped_repr(alg)} is not allowed")
                return None
            key = self._keys.pick(header.get("kid"))
            if isinstance(key, str):
                logger.debug(refused, key)
                return None
            if alg not in key.algorithms:
                logger.debug(refused, f"alg {alg} does not fit the key {clipped_repr(key.kid)}")
                return None
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as error:
            # PyJWT raises its own errors for every fault it knows; the others are belt and braces:
            # a verifier refuses, it never fails the request.
            logger.debug(refused, error)
            return None
        return self._access_token(token, claims)

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken | None:
        refused = "refused a JWT: %s"
        subject, issuer = claims.get("sub"), claims.get("iss")
        # PyJWT checked both; checked again here, since the principal is made of them.
        if issuer != self.issuer:
            logger.debug(refused, "wrong issuer")
            return None
        if not isinstance(subject, str) or not subject:
            logger.debug(refused, "sub is not a non-empty string")
            return None
        clients = [claims[name] for name in ("azp", "client_id") if name in claims]
        if len(clients) == 2 and clients[0] != clients[1]:
            logger.debug(refused, "azp and client_id name different clients")
            return None
        client = clients[0] if clients else subject
        if not isinstance(client, str) or not client:
            logger.debug(refused, "azp or client_id is not a non-empty string")
            return None
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            logger.debug(refused, "scope is not a string")
            return None
        return AccessToken(
            token=token,
            client_id=client,
            subject=subject,
            scopes=scope.split(),
            # The SDK's bearer middleware refuses a token past expires_at with
            # no leeway of its own: the leeway granted above goes in here.
            expires_at=int(claims["exp"] + self.leeway),
            resource=self.audience,
            claims=claims,
        )
