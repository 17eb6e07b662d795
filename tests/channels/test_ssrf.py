"""SSRF: a channel's base URL reaches only public addresses (or the operator's allowed ranges),
checked when it is saved and, binding, when the connection is made to the address vetted.

DNS cannot run here, so the resolver is a function the tests hand in: that is the one fake."""

from __future__ import annotations

import socket

import httpx
import pytest
from django.core.management import CommandError, call_command

from providers.netpin import parse_networks, pinned_async_transport
from channels.netguard import base_url_problem
from tests.fakes.server import ServerThread

REFUSED = {
    "loopback": "127.0.0.1",
    "loopback_v6": "::1",
    "private_10": "10.1.2.3",
    "private_172": "172.16.0.9",
    "private_192": "192.168.1.1",
    "link_local": "169.254.10.10",
    "metadata": "169.254.169.254",
    "shared_100_64": "100.64.0.1",
    "alibaba_metadata": "100.100.100.200",
    "multicast": "224.0.0.251",
    "reserved": "240.0.0.1",
    "unspecified": "0.0.0.0",
    "ipv4_mapped_private": "::ffff:10.0.0.1",
    "ipv4_mapped_metadata": "::ffff:169.254.169.254",
    "v6_unique_local": "fd00::1",
    "v6_link_local": "fe80::1",
}
PUBLIC = "93.184.216.34"


class _Recorder:
    """An upstream that answers 200 and remembers the Host header of each request."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def __call__(self, scope, receive, send):
        headers = dict(scope["headers"])
        self.hosts.append(headers.get(b"host", b"").decode())
        status = 302 if scope["path"] == "/redirect" else 200
        extra = [(b"location", b"http://169.254.169.254/latest/meta-data/")] if status == 302 else []
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")] + extra})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def recorder():
    app = _Recorder()
    server = ServerThread(app).start()
    yield app, server
    server.stop()


def _answers(*rounds: list[str]):
    """A resolver giving each round's addresses in turn (the last one repeats)."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return rounds[min(len(calls), len(rounds)) - 1]

    async def aresolve(host: str, port: int) -> list[str]:
        return resolve(host, port)

    return resolve, aresolve, calls


def _client(aresolver, allow: str = "") -> httpx.AsyncClient:
    networks = parse_networks(allow.split(","))
    return httpx.AsyncClient(transport=pinned_async_transport(allow=lambda: networks, resolver=aresolver), follow_redirects=False)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_it_refuses_a_base_url_resolving_to_an_internal_address_at_save(name, settings):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    resolve, _, _ = _answers([REFUSED[name]])
    assert "refused address" in base_url_problem("https://upstream.test/v1", resolver=resolve)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "100.100.100.200", "[::ffff:10.0.0.1]"])
@pytest.mark.django_db
def test_add_channel_refuses_an_internal_literal_address_and_saves_nothing(address, settings):
    from channels.models import Channel

    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    with pytest.raises(CommandError, match="refused address"):
        call_command("add_channel", "inside", "--type", "openai", "--base-url", f"http://{address}/v1", "--models", "m1")
    assert not Channel.objects.filter(name="inside").exists()


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_it_refuses_to_connect_to_an_internal_address(name, recorder):
    app, server = recorder
    before = len(app.hosts)
    _, aresolve, _ = _answers([REFUSED[name]])
    async with _client(aresolve) as client:
        with pytest.raises(httpx.ConnectError, match="refused address"):
            await client.get(f"http://upstream.test:{server.port}/v1/models")
    assert len(app.hosts) == before


async def test_a_rebinding_name_passes_the_save_check_and_is_refused_at_connect(recorder, settings):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    app, server = recorder
    before = len(app.hosts)
    resolve, aresolve, calls = _answers([PUBLIC], ["127.0.0.1"])
    assert base_url_problem(f"http://rebind.test:{server.port}/v1", resolver=resolve) is None
    async with _client(aresolve) as client:
        with pytest.raises(httpx.ConnectError, match="127.0.0.1 is not a public address"):
            await client.get(f"http://rebind.test:{server.port}/v1/models")
    assert calls == ["rebind.test", "rebind.test"]
    assert len(app.hosts) == before  # nothing reached the internal server


async def test_one_internal_address_among_public_ones_is_refused(recorder):
    _, server = recorder
    _, aresolve, _ = _answers([PUBLIC, "10.0.0.7"])
    async with _client(aresolve) as client:
        with pytest.raises(httpx.ConnectError, match="10.0.0.7"):
            await client.get(f"http://mixed.test:{server.port}/")


async def test_it_connects_to_the_vetted_address_and_keeps_the_host_name(recorder):
    app, server = recorder
    _, aresolve, calls = _answers(["127.0.0.1"])
    async with _client(aresolve, allow="127.0.0.0/8") as client:
        response = await client.get(f"http://pinned.test:{server.port}/v1/models")
    assert response.status_code == 200
    assert app.hosts[-1] == f"pinned.test:{server.port}"  # the name only our resolver knows
    assert calls == ["pinned.test"]


async def test_an_unresolvable_name_is_refused_at_save_and_at_connect(settings):
    def fail(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def afail(host, port):
        fail(host, port)

    assert "did not resolve" in base_url_problem("https://nowhere.test/v1", resolver=fail)
    assert "did not resolve" in base_url_problem("https://nowhere.invalid/v1")
    assert "did not resolve" in base_url_problem("https://nowhere.invalid/v1")  # not remembered as allowed
    # saving may name a host that does not resolve yet: the connection still refuses it
    assert base_url_problem("https://nowhere.invalid/v1", is_saving=True) is None
    assert "did not resolve" in base_url_problem("https://nowhere.invalid/v1")
    async with _client(afail) as client:
        with pytest.raises(httpx.ConnectError, match="did not resolve"):
            await client.get("https://nowhere.test/v1/models")


async def test_the_relay_client_does_not_follow_a_redirect_to_another_host(recorder, settings):
    from channels import upstream

    app, server = recorder
    client = upstream.client_make()
    async with client:
        response = await client.get(f"{server.url}/redirect")
    assert response.status_code == 302
    assert app.hosts[-1] == f"127.0.0.1:{server.port}"


async def test_the_relay_client_refuses_loopback_unless_allowed(recorder, settings):
    from channels import upstream

    _, server = recorder
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    async with upstream.client_make() as client:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await client.get(f"{server.url}/v1/models")
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = ["127.0.0.0/8"]
    async with upstream.client_make() as client:
        assert (await client.get(f"{server.url}/v1/models")).status_code == 200


def test_the_admin_refuses_an_internal_base_url(admin_client, settings, db):
    from tests.conftest import make_channel

    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = ["127.0.0.0/8"]
    channel = make_channel("edited", "http://127.0.0.1:9/v1")
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    page = admin_client.get(f"/admin/channels/channel/{channel.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for form_in_set in formset.forms:
            data.update({form_in_set.add_prefix(n): form_in_set[n].value() for n in form_in_set.fields if form_in_set[n].value() is not None})
    data["base_url"] = "http://169.254.169.254/latest"
    response = admin_client.post(f"/admin/channels/channel/{channel.pk}/change/", data)
    assert response.status_code == 200 and b"refused address" in response.content
    channel.refresh_from_db()
    assert channel.base_url == "http://127.0.0.1:9/v1"


def _certificate_for(host: str, tmp_path):
    """A throwaway CA and a server certificate for `host`; returns (cert file, key file, CA pem)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file, ca.public_bytes(serialization.Encoding.PEM).decode()


async def test_tls_is_verified_for_the_host_name_while_connecting_to_the_vetted_address(tmp_path):
    import ssl
    import threading
    import time

    import uvicorn

    cert_file, key_file, ca_pem = _certificate_for("upstream.test", tmp_path)
    app = _Recorder()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        trust = ssl.create_default_context(cadata=ca_pem)
        networks = parse_networks(["127.0.0.0/8"])
        _, aresolve, _ = _answers(["127.0.0.1"])
        transport = pinned_async_transport(allow=lambda: networks, resolver=aresolve, verify=trust)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"https://upstream.test:{port}/v1/models")
            assert response.status_code == 200 and app.hosts[-1] == f"upstream.test:{port}"
            # the certificate is checked against the name asked for, not the address connected to
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match|mismatch"):
                await client.get(f"https://other.test:{port}/v1/models")
    finally:
        server.should_exit = True
        thread.join(5)
