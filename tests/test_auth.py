"""Who may talk to a server, over real gRPC on 127.0.0.1: token, TLS, mutual TLS, the bind rule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_ps.auth import AuthError, Security, check_bind, read_token
from grpc_ps.certs import write_certs
from grpc_ps.client import PSClient
from grpc_ps.server import ParameterServerServicer, run_server
from pslab.policies import StalenessPolicy
from pslab_cli.main import main

N = 64
TOKEN = "s3cret-token"
# a TLS handshake that fails leaves the channel down: the call (waiting for it) never starts
NO_CONNECTION = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    write_certs(directory, ["127.0.0.1"])
    return directory


@contextmanager
def served(security: Security) -> Iterator[str]:
    servicer = ParameterServerServicer(0, 0, N, 1, StalenessPolicy(1), 0.1, initial=np.zeros(N))
    with run_server(servicer, grace=None, security=security) as (_, port):
        yield f"127.0.0.1:{port}"


def register(address: str, security: Security) -> grpc.StatusCode:
    """OK if a worker with these credentials can register, else the call's status."""
    with PSClient([address], 0, 1, N, timeout=1.0, security=security, retry_for=0.01) as c:
        try:
            c.register()
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def test_the_token_is_required_on_every_call_but_the_health_check() -> None:
    with served(Security(token=TOKEN)) as address:
        assert register(address, Security()) == grpc.StatusCode.UNAUTHENTICATED
        assert register(address, Security(token="wrong")) == grpc.StatusCode.UNAUTHENTICATED
        assert register(address, Security(token=TOKEN + "x")) == grpc.StatusCode.UNAUTHENTICATED
        assert register(address, Security(token=TOKEN)) == grpc.StatusCode.OK
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_streams_are_refused_before_they_are_read() -> None:
    with served(Security(token=TOKEN)) as address, grpc.insecure_channel(address) as channel:
        push = channel.stream_unary("/pslab.v1.ParameterServer/Push")
        with pytest.raises(grpc.RpcError) as err:
            push(iter([b"\xff" * 100]), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_token_is_never_printed() -> None:
    assert TOKEN not in repr(Security(token=TOKEN))


def test_tls_with_generated_certificates(certs: Path) -> None:
    server = Security(TOKEN, certs / "127.0.0.1.pem", certs / "127.0.0.1.key")
    with served(server) as address:
        assert register(address, Security(TOKEN, ca=certs / "ca.pem")) == grpc.StatusCode.OK
        assert register(address, Security(TOKEN)) in NO_CONNECTION  # plaintext
        assert register(address, Security(ca=certs / "ca.pem")) == grpc.StatusCode.UNAUTHENTICATED


def test_mutual_tls_requires_a_client_certificate(certs: Path) -> None:
    host = (certs / "127.0.0.1.pem", certs / "127.0.0.1.key", certs / "ca.pem")
    with served(Security(TOKEN, *host)) as address:
        assert register(address, Security(TOKEN, *host)) == grpc.StatusCode.OK
        no_cert = Security(TOKEN, ca=certs / "ca.pem")
        assert register(address, no_cert) in NO_CONNECTION


def test_a_certificate_from_another_ca_is_refused(certs: Path, tmp_path: Path) -> None:
    write_certs(tmp_path, ["127.0.0.1"])
    ours = (certs / "127.0.0.1.pem", certs / "127.0.0.1.key", certs / "ca.pem")
    theirs = (tmp_path / "127.0.0.1.pem", tmp_path / "127.0.0.1.key", tmp_path / "ca.pem")
    with served(Security(TOKEN, *ours)) as address:
        assert register(address, Security(TOKEN, *theirs)) in NO_CONNECTION


def test_only_loopback_may_go_without_tls_and_token() -> None:
    check_bind("127.0.0.1", tls=False, token=False, insecure=False)
    check_bind("::1", tls=False, token=False, insecure=False)
    check_bind("0.0.0.0", tls=True, token=True, insecure=False)
    check_bind("0.0.0.0", tls=False, token=False, insecure=True)
    for tls, token in [(False, False), (True, False), (False, True)]:
        with pytest.raises(AuthError, match="--insecure"):
            check_bind("0.0.0.0", tls=tls, token=token, insecure=False)
    servicer = ParameterServerServicer(0, 0, N, 1, StalenessPolicy(1), 0.1)
    with pytest.raises(AuthError), run_server(servicer, host="0.0.0.0"):
        pass  # serve() applies the same rule


def test_pslab_serve_refuses_an_exposed_bind_before_anything_else(capsys) -> None:
    # the scenario does not even exist: the bind rule is checked first, nothing is bound
    code = main(["serve", "no-such.yaml", "--role", "ps", "--bind", "0.0.0.0:7000"])
    assert code == 2
    message = capsys.readouterr().err
    for flag in ("--tls-cert", "--tls-key", "--token-file", "PSLAB_TOKEN", "--insecure"):
        assert flag in message


def test_pslab_certs_writes_a_ca_and_a_pair_per_host(tmp_path: Path) -> None:
    assert main(["certs", str(tmp_path), "--hosts", "nodeA,10.0.0.2"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["ca.pem", "ca.key", "nodeA.pem", "nodeA.key", "10.0.0.2.pem", "10.0.0.2.key"]
    )
    assert (tmp_path / "nodeA.key").stat().st_mode & 0o077 == 0  # private keys: owner only


def test_pslab_serve_names_a_missing_certificate_file(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such.pem"
    args = ["serve", "no-such.yaml", "--role", "ps", "--tls-cert", str(missing)]
    assert main([*args, "--tls-key", str(tmp_path / "no-such.key")]) == 2
    message = capsys.readouterr().err
    assert "cannot read" in message and "no-such.pem" in message
    assert "Traceback" not in message


def test_a_token_file_of_more_than_one_line_is_refused(tmp_path: Path, capsys) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\nsecond-token\n")
    with pytest.raises(AuthError, match="more than one line"):
        read_token(token_file)
    args = ["serve", "no-such.yaml", "--role", "ps", "--token-file", str(token_file)]
    assert main(args) == 2
    assert "more than one line" in capsys.readouterr().err
    token_file.write_text("  one-token \n")  # surrounding blank space is no second line
    assert read_token(token_file) == "one-token"
    with pytest.raises(AuthError, match="newline"):
        Security(token="a\nb")  # from PSLAB_TOKEN, say


def test_pslab_certs_keeps_an_existing_ca_unless_forced(tmp_path: Path) -> None:
    assert main(["certs", str(tmp_path), "--hosts", "nodeA"]) == 0
    ca = (tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()
    assert main(["certs", str(tmp_path), "--hosts", "nodeB"]) == 0
    assert ((tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()) == ca
    authority = x509.load_pem_x509_certificate(ca[0])
    node_b = x509.load_pem_x509_certificate((tmp_path / "nodeB.pem").read_bytes())
    node_b.verify_directly_issued_by(authority)  # the kept CA signed the new host
    assert main(["certs", str(tmp_path), "--hosts", "nodeB", "--force"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != ca[0]


@pytest.mark.parametrize("hosts", ["ca,node1", "CA", "a b", "../x", "-bad", "x..y", "n/de"])
def test_pslab_certs_refuses_what_is_not_a_host_name(tmp_path: Path, hosts: str, capsys) -> None:
    assert main(["certs", str(tmp_path / "d"), f"--hosts={hosts}"]) == 2
    assert "pslab certs" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was written
