"""The one line reader every line-based source uses, and the certificate and address
rules the log sources share with iotiam's own traffic."""

from __future__ import annotations

import base64
import codecs
import io
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotiam.discovery.models import Refusal, SourceContext
from iotiam.discovery.sources._common import _MIXED_BLOCKS, Addresses, certificate_facts
from iotiam.discovery.sources.broker_clients import EmqxClientsSource
from iotiam.discovery.sources.lines import MAX_LINE, Line, bounded_lines, read_lines
from iotiam.discovery.sources.own_traffic import certificate_fields, is_site_address
from iotiam.discovery.sources.suricata import SuricataSource
from iotiam.discovery.sources.zeek import ZeekSource
from iotiam.errors import InvalidInput

from .generated import CONN_HEADER, collect, conn_line

CONTEXT = SourceContext(site="plant-1", default_time=1_796_551_200.0)
EVE = (b'{"timestamp":"2026-12-06T10:00:00.000000+0000","event_type":"mqtt",'
       b'"src_ip":"10.1.0.5","src_port":50000,"dest_ip":"10.0.0.10","dest_port":1883,'
       b'"proto":"TCP","mqtt":{"connect":{"client_id":"dev-1","username":"plant"}}}\n')
EMQX = b'{"data":[{"clientid":"dev-1","ip_address":"10.2.0.1","connected":true}]}\n'


def test_lines_ok_bytes_and_text_from_the_same_reader() -> None:
    data = codecs.BOM_UTF8 + b"first\r\nsecond\n\nlast"
    assert list(bounded_lines(io.BytesIO(data), what="x")) == [
        (1, b"first"), (2, b"second"), (3, b""), (4, b"last")]
    assert list(read_lines(io.BytesIO(data), what="x", keep_ends=True)) == [
        Line(1, "first\r\n"), Line(2, "second\n"), Line(3, "\n"), Line(4, "last")]
    assert list(read_lines(io.BytesIO(b"caf\xe9\n"), what="x", encoding="cp1252")) == [
        Line(1, "café")]


def test_lines_fail_over_the_bound_is_none_then_reading_goes_on() -> None:
    data = b"a\n" + b"x" * (MAX_LINE + 1) + b"\nb\n"
    assert list(bounded_lines(io.BytesIO(data), what="x")) == [(1, b"a"), (2, None), (3, b"b")]
    assert list(bounded_lines(io.BytesIO(b"x" * MAX_LINE + b"\n"), what="x")) == [
        (1, b"x" * MAX_LINE)]  # the bound itself is allowed


@pytest.mark.parametrize("read", [
    lambda data: collect(ZeekSource().read(io.BytesIO(data), CONTEXT)),
    lambda data: collect(SuricataSource().read(io.BytesIO(data), CONTEXT)),
    lambda data: collect(EmqxClientsSource().read(io.BytesIO(data), CONTEXT)),
], ids=["fail/zeek", "fail/suricata", "fail/emqx"])
def test_log_sources_fail_utf16_refused_whole(read: object) -> None:
    for bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        with pytest.raises(InvalidInput, match="UTF-16"):
            read(bom + "{}\n".encode("utf-16-le"))  # type: ignore[operator]


def test_log_sources_ok_a_utf8_bom_is_dropped() -> None:
    header = CONN_HEADER.encode()
    plain = collect(ZeekSource().read(io.BytesIO(header + conn_line(1).encode()), CONTEXT))
    bom = collect(ZeekSource().read(
        io.BytesIO(codecs.BOM_UTF8 + header + conn_line(1).encode()), CONTEXT))
    assert bom == plain and plain[0] and not plain[1]
    eve = collect(SuricataSource().read(io.BytesIO(codecs.BOM_UTF8 + EVE), CONTEXT))
    assert [s.client_id for s in eve[0]] == ["dev-1"] and eve[1] == []
    emqx = collect(EmqxClientsSource().read(io.BytesIO(codecs.BOM_UTF8 + EMQX), CONTEXT))
    assert [s.client_id for s in emqx[0]] == ["dev-1"] and emqx[1] == []


def test_log_sources_fail_a_line_over_64_kib_is_refused_alone() -> None:
    long_line = b'{"x":"' + b"A" * MAX_LINE + b'"}\n'
    sightings, refusals = collect(SuricataSource().read(
        io.BytesIO(EVE + long_line + EVE), CONTEXT))
    assert len(sightings) == 2
    assert refusals == [Refusal(2, f"the line is longer than {MAX_LINE} bytes; skipped")]


def _certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cam-7"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plant")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(0xC0FFEE)
            .not_valid_before(start).not_valid_after(start + timedelta(days=400))
            .sign(key, hashes.SHA256()))


def test_certificates_ok_a_logged_one_reads_as_a_presented_one() -> None:
    cert = _certificate()
    der = cert.public_bytes(serialization.Encoding.DER)
    logged = certificate_facts(base64.b64encode(der).decode())
    assert logged == certificate_fields(cert)
    assert logged["key"] == "ec:secp256r1" and logged["serial"] == "c0ffee"
    assert logged["issuer"] == "O=Plant,CN=cam-7" and logged["signature_hash"] == "sha256"


@pytest.mark.parametrize("address", ["10.1.2.3", "fd12::1", "169.254.1.1"])
def test_addresses_ok_site_addresses_are_local_device_addresses(address: str) -> None:
    assert is_site_address(address)
    assert Addresses().look(address)[1:] == (True, True)


@pytest.mark.parametrize("address", ["255.255.255.255", "0.0.0.0", "127.0.0.1",
                                     "224.0.0.251", "ff02::1"])
def test_addresses_fail_nobodys_addresses_are_no_device_and_no_site(address: str) -> None:
    assert not is_site_address(address)
    assert Addresses().look(address)[2] is False


#: addresses whose /24 another one classified first: the answer must still be their own
NEIGHBOURS = ["10.1.2.3", "10.1.2.200", "192.0.0.1", "192.0.0.9", "192.0.0.170",
              "192.0.0.200", "255.255.255.254", "255.255.255.255", "0.0.0.1", "0.0.0.0",
              "127.0.0.1", "127.0.0.2", "224.0.0.1", "224.0.0.251", "100.64.0.1",
              "172.31.255.1", "172.32.0.1", "8.8.8.8", "8.8.8.9", "::ffff:10.1.2.4",
              "fe80::1", "fd00::1", "2001:db8::1"]


def exact(address: str) -> tuple[bool, bool]:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    device = not (ip.is_unspecified or ip.is_multicast or ip.is_loopback
                  or ip == ipaddress.IPv4Address("255.255.255.255"))
    return device and ip.is_private, device


@pytest.mark.parametrize("order", [1, -1], ids=["ok/forward", "ok/backward"])
def test_addresses_ok_per_block_answers_are_each_addresses_own(order: int) -> None:
    addresses = Addresses()
    for address in NEIGHBOURS[::order]:
        assert addresses.look(address)[1:] == exact(address), address


def test_addresses_ok_networks_narrower_than_a_block_are_all_in_mixed_blocks() -> None:
    # what lets Addresses classify a /24 once: ipaddress's own tables (private names,
    # read here only to notice a Python that adds a narrower network)
    constants = ipaddress._IPv4Constants  # type: ignore[attr-defined]
    networks = [*constants._private_networks,
                *getattr(constants, "_private_networks_exceptions", []),
                constants._multicast_network, constants._loopback_network,
                ipaddress.IPv4Network("0.0.0.0/32"), ipaddress.IPv4Network("255.255.255.255/32")]
    narrow = {str(n.network_address).rpartition(".")[0] for n in networks
              if isinstance(n, ipaddress.IPv4Network) and n.prefixlen > 24}
    assert narrow <= _MIXED_BLOCKS
