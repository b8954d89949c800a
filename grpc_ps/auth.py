"""Who may talk to a server: a shared bearer token and TLS, for servers and clients alike.

One :class:`Security` describes a process's side of a run: the token every call carries,
and the host's certificate, key and the run's CA. A server uses the certificate and key to
serve TLS and, given the CA too, requires clients to present a certificate it signed (mutual
TLS); a client verifies the server against the CA and presents its host's certificate. Local
runs use the token alone, over loopback.

Processes get their side from the environment (``PSLAB_TOKEN``, ``PSLAB_TLS_CERT``,
``PSLAB_TLS_KEY``, ``PSLAB_TLS_CA``), which the launcher, torchrun and SLURM all pass on and
which, unlike argv, other users cannot read in ``ps``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "PSLAB_TOKEN"
CERT_ENV, KEY_ENV, CA_ENV = "PSLAB_TLS_CERT", "PSLAB_TLS_KEY", "PSLAB_TLS_CA"
HEADER = "authorization"
OPEN_METHODS = ("/grpc.health.v1.Health/",)  # load balancers and probes hold no token


class AuthError(ValueError):
    """A configuration that would expose a server, or credentials that cannot be read."""


@dataclass(frozen=True)
class Security:
    token: str | None = field(default=None, repr=False)  # never printed
    cert: Path | None = None  # this host's certificate chain (PEM)
    key: Path | None = None  # its private key (PEM)
    ca: Path | None = None  # the run's CA (PEM): verify peers with it

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise AuthError("the token is empty")
        if self.token is not None and not self.token.isprintable():
            raise AuthError("the token holds a newline or a control character: one line only")
        if (self.cert is None) != (self.key is None):
            raise AuthError("--tls-cert and --tls-key go together")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Security:
        def path(name: str) -> Path | None:
            return Path(environ[name]) if environ.get(name) else None

        return cls(environ.get(TOKEN_ENV) or None, path(CERT_ENV), path(KEY_ENV), path(CA_ENV))

    def check_files(self) -> None:
        """Read the certificate, key and CA now: a missing file is an AuthError naming it,
        before a scenario is loaded or a port bound, not a traceback from grpc later."""
        for path in (self.cert, self.key, self.ca):
            if path is not None:
                _read(path)

    @property
    def tls(self) -> bool:
        return self.cert is not None

    def environ(self) -> dict[str, str]:
        """The variables that hand this side to a child process (see :meth:`from_env`)."""
        pairs = [(TOKEN_ENV, self.token), (CERT_ENV, self.cert), (KEY_ENV, self.key)]
        pairs.append((CA_ENV, self.ca))
        return {name: str(value) for name, value in pairs if value is not None}

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials to serve with (mutual when a CA is set); None: plaintext."""
        if self.cert is None or self.key is None:
            return None
        ca = _read(self.ca) if self.ca else None
        return grpc.ssl_server_credentials(
            [(_read(self.key), _read(self.cert))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )

    def server_interceptors(self) -> list[grpc.ServerInterceptor]:
        return [TokenCheck(self.token)] if self.token else []

    def channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        """A channel to ``address``: TLS when a CA is set, the token on every call."""
        if self.ca is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(self.ca),
                private_key=_read(self.key) if self.key else None,
                certificate_chain=_read(self.cert) if self.cert else None,
            )
            channel = grpc.secure_channel(address, creds, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        return grpc.intercept_channel(channel, _Bearer(self.token)) if self.token else channel


def new_token() -> str:
    """A fresh random token (256 bits), e.g. one per local run."""
    return secrets.token_urlsafe(32)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise AuthError(f"cannot read {path}: {e.strerror}") from None


def read_token(path: Path) -> str:
    """The token in ``path``: one line (surrounding blank space ignored), printable ASCII.

    Anything else is refused here, with the file named: a token with a newline or a control
    character inside is not valid gRPC metadata, so a server would accept it and every
    client then fail with INTERNAL "Invalid metadata".
    """
    try:
        token = _read(path).decode("ascii").strip()
    except UnicodeDecodeError:
        raise AuthError(f"{path}: a token is printable ASCII") from None
    if not token:
        raise AuthError(f"{path} holds no token")
    if "\n" in token or "\r" in token:
        raise AuthError(f"{path} holds more than one line: a token file holds one token")
    if not token.isprintable():
        raise AuthError(f"{path}: a token is printable ASCII, without control characters")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, tls: bool, token: bool, insecure: bool) -> None:
    """Refuse to expose a server beyond this machine without TLS and a token.

    Takes what is configured, not the files, so that it runs before anything is read. Raises
    :class:`AuthError` naming the flags that fix it; ``insecure`` overrides (the caller
    warns).
    """
    if is_loopback(host) or insecure or (tls and token):
        return
    missing = [
        what for what, ok in (("TLS (--tls-cert, --tls-key)", tls), ("a token", token)) if not ok
    ]
    raise AuthError(
        f"binding {host} would expose the server to the network without {' and '.join(missing)}: "
        f"pass --tls-cert and --tls-key (and --tls-ca for mutual TLS) and a token "
        f"(--token-file or {TOKEN_ENV}), or --insecure to accept the risk"
    )


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class TokenCheck(grpc.ServerInterceptor):
    """Every call but the health check must carry ``authorization: Bearer <token>``.

    Compared in constant time (and as digests, so not even the length leaks); the token is
    never logged or echoed. A refused call is answered UNAUTHENTICATED from its metadata
    alone, before its request is received: see :func:`_refusal`.
    """

    def __init__(self, token: str) -> None:
        self._expected = _digest(f"Bearer {token}")

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_METHODS):
            return handler
        sent = next((v for k, v in details.invocation_metadata or () if k == HEADER), "")
        if isinstance(sent, str) and hmac.compare_digest(_digest(sent), self._expected):
            return handler
        return _refusal(handler)


def _refuse(request: object, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler that refuses at once, without receiving the request.

    It is always a *request-streaming* handler, whatever the method's kind: grpcio receives
    (and buffers) a unary request whole before it calls a unary handler, so refusing a 60 MB
    ``PushOne`` that way costs 60 MB, times the calls in flight. A streaming handler is
    called as soon as the metadata arrives, and the abort cancels the stream unread. The
    wire does not tell the two kinds apart, so the peer sees a plain UNAUTHENTICATED.
    """
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse)
    return grpc.stream_unary_rpc_method_handler(_refuse)


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the token to every call's metadata, whatever the call's kind."""

    def __init__(self, token: str) -> None:
        self._pair = (HEADER, f"Bearer {token}")

    def _call(self, continuation: Callable, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._pair]
        return continuation(details._replace(metadata=metadata), request)

    intercept_unary_unary = intercept_unary_stream = _call
    intercept_stream_unary = intercept_stream_stream = _call
