"""The value classes an engine takes for its network and its outputs, and what the
engine's copy of its settings (the journal's) makes of them."""

from __future__ import annotations

import os

import pytest

import shoal
from shoal import ConfigError, DNSSettings, Engine, Network, Outputs, Records
from shoal.config import DEFAULT_USER_AGENT, DEFAULT_WARC_MAX_SIZE


def test_network_and_outputs_default_to_what_an_engine_had_without_them() -> None:
    network, outputs = Network(), Outputs()
    assert network.user_agent == DEFAULT_USER_AGENT == f"shoal/{shoal.__version__}"
    assert (network.proxy, network.proxy_env, network.verify_tls) == (None, True, True)
    assert (network.ca_bundle, network.cookies) == (None, False)
    assert dict(network.headers) == {} and dict(network.resolve) == {}
    assert network.dns == DNSSettings()
    assert outputs.records == Records() and (outputs.bodies, outputs.warc) == (None, None)
    assert outputs.warc_max_size == DEFAULT_WARC_MAX_SIZE


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: Outputs(warc_max_size=0), "warc_max_size"),
        (lambda: Outputs(records=("etag",)), "records"),  # type: ignore[arg-type]
        (lambda: Network(headers="X-A: b"), "headers"),  # type: ignore[arg-type]
        (lambda: Network(user_agent=""), "user_agent"),
        (lambda: Network(dns=("1.1.1.1",)), "dns"),  # type: ignore[arg-type]
        (lambda: Engine(network=Network(proxy="ftp://p.test")), "proxy"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_its_setting(make: object, option: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make()  # type: ignore[operator]
    assert raised.value.option == option


def test_the_journals_copy_is_made_from_the_value_classes(tmp_path: object) -> None:
    engine = Engine(
        network=Network(
            headers={"X-Team": "a", "user-agent": "mine/1"},
            proxy="http://user:secret@p.test:3128",
            verify_tls=False,
            cookies=True,
            resolve={"a.test": "127.0.0.1"},
            dns=DNSSettings(min_ttl_s=5),
        ),
        outputs=Outputs(records=Records(keep_headers=("ETag",)), bodies="bodies"),
        fail_http=True,
    )
    copy = engine._description("out.jsonl")
    assert copy["user_agent"] == "mine/1"  # (a User-Agent header wins)
    assert copy["headers"] == ["X-Team"]  # names only: values may be credentials
    assert copy["proxy"] == "http://p.test:3128"
    assert (copy["verify_tls"], copy["cookies"], copy["fail_http"]) == (False, True, True)
    assert copy["resolve"] == {"a.test": "127.0.0.1"}
    assert copy["dns"]["min_ttl_s"] == 5
    assert copy["records"] == {"keep_headers": ["etag"]}
    assert copy["save_bodies"] == os.path.abspath("bodies")
    assert copy["output"] == os.path.abspath("out.jsonl")
    assert copy["warc"] is None
