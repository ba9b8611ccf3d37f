"""Configuration: precedence, types, strict validation, sources, and the CLI view of it."""

from __future__ import annotations

import pytest

from bzzz_edge.cli import main
from bzzz_edge.config import SCHEMA, load_config
from bzzz_edge.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_env_then_flags(tmp_path):
    path = _write(tmp_path, '[log]\nlevel = "warning"\n[health]\ninterval = 3.5\n'
                            'disk_min_free_mb = 7\n')
    config = load_config(
        config_file=path,
        environ={"BZZZ_EDGE_LOG_LEVEL": "error", "BZZZ_EDGE_HEALTH_INTERVAL": "2"},
        flags={"log.level": "debug", "node.data_dir": str(tmp_path)},
    )
    assert config["log.level"] == "debug" and str(config.sources["log.level"]) == "flag"
    assert config["health.interval"] == 2.0
    assert str(config.sources["health.interval"]) == "env BZZZ_EDGE_HEALTH_INTERVAL"
    assert config["health.disk_min_free_mb"] == 7
    assert str(config.sources["health.disk_min_free_mb"]) == f"file {path}"
    assert config["shutdown.deadline"] == 10.0
    assert str(config.sources["shutdown.deadline"]) == "default"


def test_config_file_found_in_data_dir(tmp_path):
    _write(tmp_path, '[node]\nname = "pi-kitchen"\n')
    config = load_config(environ={"BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})
    assert config["node.name"] == "pi-kitchen"
    assert config.file == tmp_path / "config.toml"


def test_every_key_has_an_env_variable():
    names = {key.env_name for key in SCHEMA}
    assert "BZZZ_EDGE_HEALTH_DISK_MIN_FREE_MB" in names
    assert len(names) == len(SCHEMA)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[log]\nlevl = "info"\n', "log.levl", "did you mean log.level"),
        ('[nope]\nx = 1\n', "nope.x", "unknown key nope.x"),
        ('[log]\nlevel = "loud"\n', "log.level", "expected one of debug, info, warning, error"),
        ('[health]\ninterval = "soon"\n', "health.interval", "expected a number"),
        ('[health]\ndisk_min_free_mb = 1.5\n', "health.disk_min_free_mb", "expected an integer"),
        ('[shutdown]\ndeadline = 0\n', "shutdown.deadline", "from 0.1 to 600"),
        ('[network]\nmdns = "yes"\n', "network.mdns", "expected a boolean"),
        ('[network]\nbootstrap_peers = ["a.lan"]\n', "network.bootstrap_peers", "host:port"),
        ('[api]\nlisten = "127.0.0.1:99999"\n', "api.listen", "0 to 65535"),
        ('log = 3\n', "log", "must be a [section] table"),
    ],
)
def test_bad_file_values_name_key_and_value(tmp_path, text, key, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(config_file=_write(tmp_path, text), environ={})
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(tmp_path / "config.toml") in str(info.value)


def test_bad_value_message_includes_the_value(tmp_path):
    with pytest.raises(ConfigError, match=r"bad value 'loud' for log.level"):
        load_config(config_file=_write(tmp_path, '[log]\nlevel = "loud"\n'), environ={})


def test_invalid_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=_write(tmp_path, "[log\n"), environ={})


def test_unknown_environment_variable_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="BZZZ_EDGE_LOG_LEVLE") as info:
        load_config(environ={"BZZZ_EDGE_LOG_LEVLE": "debug",
                             "BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})
    assert info.value.key == "BZZZ_EDGE_LOG_LEVLE"


def test_bad_environment_value_names_variable(tmp_path):
    with pytest.raises(ConfigError, match="environment BZZZ_EDGE_HEALTH_TIMEOUT"):
        load_config(environ={"BZZZ_EDGE_HEALTH_TIMEOUT": "x",
                             "BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})


def test_env_booleans_and_lists_parse_from_text(tmp_path):
    config = load_config(environ={"BZZZ_EDGE_NETWORK_MDNS": "off",
                                  "BZZZ_EDGE_NETWORK_BOOTSTRAP_PEERS": "a:1, [::1]:2",
                                  "BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})
    assert config["network.mdns"] is False
    assert config["network.bootstrap_peers"] == ("a:1", "[::1]:2")


def test_non_loopback_api_requires_token(tmp_path):
    flags = {"node.data_dir": str(tmp_path), "api.listen": "0.0.0.0:7341"}
    with pytest.raises(ConfigError, match=r"requires api\.token") as info:
        load_config(flags=flags, environ={})
    assert info.value.key == "api.listen"
    config = load_config(flags={**flags, "api.token": "tok-123456"}, environ={})
    assert config["api.listen"] == "0.0.0.0:7341"


def test_unknown_flag_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key api\.lisen"):
        load_config(flags={"api.lisen": "x", "node.data_dir": str(tmp_path)}, environ={})


def test_config_show_prints_values_and_sources(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BZZZ_EDGE_LOG_FORMAT", "json")
    _write(tmp_path, '[health]\ninterval = 4.0\n')
    code = main(["config", "show", "--data-dir", str(tmp_path), "--set", "api.token=topsecret99"])
    out = capsys.readouterr().out
    assert code == 0
    assert "health.interval = 4.0" in out and f"# file {tmp_path / 'config.toml'}" in out
    assert 'log.format = "json"' in out and "# env BZZZ_EDGE_LOG_FORMAT" in out
    assert "topsecret99" not in out and "api.token = ********" in out


def test_cli_reports_config_error_without_traceback(tmp_path, capsys):
    _write(tmp_path, '[log]\nlevel = 5\n')
    assert main(["config", "show", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bzzz-edge: error:") and "log.level" in err and "Traceback" not in err


def test_reload_rereads_file_keeps_flags(tmp_path):
    path = _write(tmp_path, '[log]\nlevel = "info"\n')
    config = load_config(config_file=path, flags={"health.timeout": "1.5"}, environ={})
    path.write_text('[log]\nlevel = "debug"\n[health]\ntimeout = 9.0\n')
    reloaded = config.reload()
    assert reloaded["log.level"] == "debug"
    assert reloaded["health.timeout"] == 1.5


def test_non_finite_numbers_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"health\.interval.*not nan"):
        load_config(environ={"BZZZ_EDGE_HEALTH_INTERVAL": "nan",
                             "BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})


def test_malformed_host_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="neither an IP address nor a valid host name"):
        load_config(environ={"BZZZ_EDGE_NETWORK_BOOTSTRAP_PEERS": "node1..lan:7340",
                             "BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})


def test_secret_values_are_not_echoed_in_errors(tmp_path):
    path = _write(tmp_path, "[api]\ntoken = 123456789\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file=path, environ={})
    assert "123456789" not in str(info.value) and "api.token" in str(info.value)


@pytest.mark.parametrize(("value", "fragment"), [
    ("pi.lan", "host names are not gossiped"), ("0.0.0.0", "not an unspecified one")])
def test_advertise_must_be_a_dialable_ip(tmp_path, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(environ={"BZZZ_EDGE_NETWORK_ADVERTISE": value,
                             "BZZZ_EDGE_NODE_DATA_DIR": str(tmp_path)})


def test_typed_sections_are_exactly_the_schema():
    """Every key has a typed field, every field a key: one place for every default."""
    from dataclasses import fields

    from bzzz_edge import settings

    typed = {f"{section.name}.{f.name}" for section in fields(settings.Settings)
             for f in fields(settings._SECTIONS[section.name])}
    assert typed == {key.dotted for key in SCHEMA}


def test_settings_carry_the_checked_values(tmp_path):
    config = load_config(environ={"BZZZ_EDGE_NETWORK_MAX_PER_IP": "7"},
                         flags={"node.data_dir": str(tmp_path)})
    assert config.settings.network.max_per_ip == 7
    assert config.settings.node.data_dir == str(tmp_path)


def test_transport_limits_default_to_the_config_defaults():
    from bzzz_edge.config import SCHEMA_DEFAULTS
    from bzzz_edge.net import NetLimits

    limits = NetLimits()
    for name in ("max_per_ip", "max_connections", "max_frame_size", "max_handshakes"):
        assert getattr(limits, name) == SCHEMA_DEFAULTS[f"network.{name}"]
