"""Build the server's ``ssl.SSLContext`` from the ``--ssl-*`` settings.

The arguments mean what Uvicorn's ``create_ssl_context`` arguments mean. Two things differ on
purpose, both about failing early and clearly:

* every problem with the certificate, key or CA files raises :class:`TLSConfigError` naming the
  file and the reason, so the server fails at startup (exit 3) and never at the first request;
* an encrypted key with no password fails instead of letting OpenSSL prompt on the terminal,
  which would hang a server started by a supervisor.

When client certificates are requested (``cert_reqs`` other than ``CERT_NONE``) and no
``ca_certs`` file is given, clients are verified against the system trust store: on macOS and
Windows through ``truststore`` when it is installed (the ``tls`` extra); on Linux and BSD, where
truststore itself just points OpenSSL at the distribution's CA bundle, that bundle is loaded
once at startup the same way.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Union

StrPath = Union[str, "os.PathLike[str]"]

# What ALPN offers when the caller does not say: the HTTP/1.1 protocols are the only ones
# every configuration can serve. The HTTP/2 protocol passes ["h2", "http/1.1"] itself.
DEFAULT_ALPN_PROTOCOLS: tuple[str, ...] = ("http/1.1",)

_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
_KEY_MARKER = b"PRIVATE KEY-----"
_ENCRYPTED_MARKERS = (b"BEGIN ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")


class TLSConfigError(ValueError):
    """A TLS setting cannot be used; the message names the file or option and the reason."""


class _NoPasswordGiven(Exception):
    """Raised from the password callback so OpenSSL never prompts on the terminal."""


def _read(kind: str, path: StrPath) -> bytes:
    """Read a whole PEM file, turning OS errors into a message that names the file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TLSConfigError(f"{kind} not found: {name!r}") from None
    except IsADirectoryError:
        raise TLSConfigError(f"{kind} is a directory, not a file: {name!r}") from None
    except PermissionError:
        raise TLSConfigError(f"{kind} is not readable (permission denied): {name!r}") from None
    except OSError as exc:
        raise TLSConfigError(f"{kind} cannot be read: {name!r}: {exc.strerror or exc}") from None


def _password_callback(password: str | None) -> Callable[[], str]:
    if password:
        return lambda: password

    def no_password() -> str:
        raise _NoPasswordGiven

    return no_password


def _load_cert_chain(
    ctx: ssl.SSLContext, certfile: StrPath, keyfile: StrPath | None, password: str | None
) -> bytes:
    """Load the certificate chain and key; returns the certificate file's PEM."""
    cert_name = os.fspath(certfile)
    cert_pem = _read("SSL certificate file", certfile)
    if _CERT_MARKER not in cert_pem:
        raise TLSConfigError(f"SSL certificate file contains no PEM certificate: {cert_name!r}")
    if keyfile is not None:
        key_name = os.fspath(keyfile)
        key_pem = _read("SSL key file", keyfile)
        key_kind = "SSL key file"
    else:
        # Uvicorn lets the certificate file carry the key as well.
        key_name, key_pem, key_kind = cert_name, cert_pem, "SSL certificate file (no --ssl-keyfile given)"
    if _KEY_MARKER not in key_pem:
        raise TLSConfigError(f"{key_kind} contains no PEM private key: {key_name!r}")
    encrypted = any(marker in key_pem for marker in _ENCRYPTED_MARKERS)
    try:
        ctx.load_cert_chain(certfile, keyfile, _password_callback(password))
    except _NoPasswordGiven:
        raise TLSConfigError(
            f"SSL key file is encrypted and no password was given (--ssl-keyfile-password): {key_name!r}"
        ) from None
    except ssl.SSLError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(
                f"SSL key does not match the certificate: key {key_name!r}, certificate {cert_name!r}"
            ) from None
        if encrypted:
            raise TLSConfigError(f"SSL key file could not be decrypted (wrong password?): {key_name!r}") from None
        raise TLSConfigError(
            f"SSL certificate or key could not be loaded ({exc}): certificate {cert_name!r}, key {key_name!r}"
        ) from None
    return cert_pem


def _load_ca_certs(ctx: ssl.SSLContext, ca_certs: StrPath) -> None:
    name = os.fspath(ca_certs)
    if os.path.isdir(name):
        # A hashed directory (c_rehash layout) is what OpenSSL calls a capath.
        try:
            ctx.load_verify_locations(capath=name)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"SSL CA certificates directory cannot be used: {name!r}: {exc}") from None
        return
    _read("SSL CA certificates file", ca_certs)
    try:
        ctx.load_verify_locations(cafile=name)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"SSL CA certificates file contains no usable PEM certificate: {name!r} ({exc.reason or exc})"
        ) from None


# Where Linux and BSD distributions keep their CA bundle, for OpenSSL builds whose compiled-in
# default paths hold no certificates (as truststore does on these systems).
_CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)


def _load_system_store(ctx: ssl.SSLContext) -> None:
    """Load the OpenSSL-visible system CA store once, at startup."""
    paths = ssl.get_default_verify_paths()
    if paths.cafile or (paths.capath and os.path.isdir(paths.capath) and os.listdir(paths.capath)):
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return
    for candidate in _CA_FILE_CANDIDATES:
        if os.path.isfile(candidate):
            ctx.load_verify_locations(cafile=candidate)
            return


def _new_context(ssl_version: int, use_system_store: bool) -> ssl.SSLContext:
    if use_system_store and sys.platform in ("darwin", "win32"):
        # There the system store is not a file OpenSSL can read: truststore asks the
        # platform's verifier after each handshake instead.
        try:
            import truststore
        except ImportError:
            pass
        else:
            ctx: ssl.SSLContext = truststore.SSLContext(ssl_version)
            return ctx
    ctx = ssl.SSLContext(ssl_version)
    if use_system_store:
        # On Linux and BSD truststore's verification *is* OpenSSL's against the CA bundle,
        # but it reloads that bundle on every connection (about 15 ms of blocked event
        # loop per TLS handshake). Loading it once here gives the same answers for free.
        _load_system_store(ctx)
    return ctx


def create_ssl_context(
    certfile: StrPath,
    keyfile: StrPath | None,
    password: str | None,
    ssl_version: int,
    cert_reqs: int,
    ca_certs: StrPath | None,
    ciphers: str | None,
    alpn_protocols: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """Return a server-side context, or raise :class:`TLSConfigError` saying what is wrong."""
    try:
        verify_mode = ssl.VerifyMode(int(cert_reqs))
    except (ValueError, TypeError):
        raise TLSConfigError(
            f"invalid --ssl-cert-reqs {cert_reqs!r}: use 0 (CERT_NONE), 1 (CERT_OPTIONAL) or 2 (CERT_REQUIRED)"
        ) from None
    use_system_store = verify_mode != ssl.CERT_NONE and not ca_certs
    try:
        ctx = _new_context(int(ssl_version), use_system_store)
    except (ValueError, TypeError) as exc:
        raise TLSConfigError(f"invalid --ssl-version {ssl_version!r}: {exc}") from None
    if getattr(ctx, "check_hostname", False):
        # PROTOCOL_TLS_CLIENT turns this on; a server has no hostname to check its clients against.
        ctx.check_hostname = False
    cert_pem = _load_cert_chain(ctx, certfile, keyfile, password)
    _SERVER_CERTS[ctx] = _first_certificate(cert_pem)
    ctx.verify_mode = verify_mode
    if ca_certs:
        _load_ca_certs(ctx, ca_certs)
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"invalid --ssl-ciphers {ciphers!r}: OpenSSL can select no cipher from it") from None
    protocols = DEFAULT_ALPN_PROTOCOLS if alpn_protocols is None else tuple(alpn_protocols)
    if protocols:
        ctx.set_alpn_protocols(list(protocols))
    return ctx


def reload_cert_chain(ctx: ssl.SSLContext, certfile: StrPath, keyfile: StrPath | None, password: str | None) -> None:
    """Load the certificate and key files again into ``ctx``, for the handshakes from now on.

    A server keeps the context object it was given, so loading into it reaches every listener (and, in
    thread mode, every worker) at once; established connections keep the certificate they shook hands
    with. The files are copied once and checked in a scratch context first: OpenSSL sets the new
    certificate before it finds a key that does not match, so loading a bad pair straight into ``ctx``
    could leave it broken, and a file rewritten between two reads could pair one key with another
    certificate. Raises :class:`TLSConfigError` with ``ctx`` as it was.
    """
    import tempfile

    cert_pem = _read("SSL certificate file", certfile)
    key_pem = _read("SSL key file", keyfile) if keyfile is not None else None
    with tempfile.TemporaryDirectory(prefix="pounce-tls-") as private:  # mode 0700: the key stays ours
        cert_copy = os.path.join(private, "cert.pem")
        key_copy = os.path.join(private, "key.pem") if key_pem is not None else None
        with open(cert_copy, "wb") as f:
            f.write(cert_pem)
        if key_copy is not None and key_pem is not None:
            with open(key_copy, "wb") as f:
                f.write(key_pem)
        try:
            _load_cert_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert_copy, key_copy, password)
        except TLSConfigError as exc:
            # Name the real files, not our copies.
            message = str(exc).replace(repr(cert_copy), repr(os.fspath(certfile)))
            if key_copy is not None and keyfile is not None:
                message = message.replace(repr(key_copy), repr(os.fspath(keyfile)))
            raise TLSConfigError(message) from None
        _load_cert_chain(ctx, cert_copy, key_copy, password)
    _SERVER_CERTS[ctx] = _first_certificate(cert_pem)


# The ASGI TLS extension (asgiref specs/tls.rst): what scope["extensions"]["tls"] holds.
# The certificate each context built here presents: Python's ssl module cannot tell a server its own.
_SERVER_CERTS: weakref.WeakKeyDictionary[ssl.SSLContext, str | None] = weakref.WeakKeyDictionary()
# Cipher suite numbers (IANA, two bytes) by OpenSSL name, per context: OpenSSL's ids end in them.
_CIPHER_IDS: weakref.WeakKeyDictionary[ssl.SSLContext, dict[str, int]] = weakref.WeakKeyDictionary()
_TLS_VERSIONS = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# RFC 4514 §3: the attribute types written by short name; others keep the name OpenSSL gives them.
_RDN_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def _first_certificate(pem: bytes) -> str | None:
    start = pem.find(_CERT_MARKER)
    end = pem.find(b"-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        return None
    try:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(pem[start : end + 25].decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return None


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any]:
    """The ``tls`` extension's dict for a TLS connection (the handshake is done when it is asked)."""
    ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    context: ssl.SSLContext | None = transport.get_extra_info("sslcontext")
    info: dict[str, Any] = {
        "server_cert": _SERVER_CERTS.get(context) if context is not None else None,
        "client_cert_chain": [],
        "client_cert_name": None,
        # A certificate that fails verification fails the handshake: no request ever sees one.
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
    if ssl_object is None:
        return info
    info["tls_version"] = _TLS_VERSIONS.get(ssl_object.version() or "")
    cipher = ssl_object.cipher()
    if cipher is not None and context is not None:
        info["cipher_suite"] = _cipher_ids(context).get(cipher[0])
    leaf = ssl_object.getpeercert(binary_form=True)
    if leaf:
        chain = [leaf]
        # Python 3.13+ also tells the certificates the client sent along with its own.
        unverified = getattr(ssl_object, "get_unverified_chain", None)
        if unverified is not None:
            sent = [bytes(cert) for cert in unverified() or ()]
            chain = sent if sent and sent[0] == leaf else [leaf, *sent]
        info["client_cert_chain"] = [ssl.DER_cert_to_PEM_cert(der) for der in chain]
        subject = (ssl_object.getpeercert() or {}).get("subject")  # only for a verified certificate
        if isinstance(subject, tuple) and subject:
            info["client_cert_name"] = rfc4514_name(subject)  # type: ignore[arg-type]  # typeshed's union
    return info


def _cipher_ids(context: ssl.SSLContext) -> dict[str, int]:
    ids = _CIPHER_IDS.get(context)
    if ids is None:
        ids = _CIPHER_IDS[context] = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
    return ids


def rfc4514_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """A distinguished name as ``SSLObject.getpeercert()`` gives it (RDNs from the root down) in
    RFC 4514 form: the last RDN first, multi-valued RDNs joined by "+", special characters escaped."""
    return ",".join(
        "+".join(f"{_RDN_NAMES.get(name, name)}={_rfc4514_escape(value)}" for name, value in rdn)
        for rdn in reversed(subject)
    )


def _rfc4514_escape(value: str) -> str:
    escaped = "".join("\\" + char if char in '"+,;<>\\' else "\\00" if char == "\0" else char for char in value)
    if value[:1] in ("#", " "):
        escaped = "\\" + escaped
    if len(value) > 1 and value.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


__all__ = ["DEFAULT_ALPN_PROTOCOLS", "TLSConfigError", "create_ssl_context", "rfc4514_name", "tls_extension"]
