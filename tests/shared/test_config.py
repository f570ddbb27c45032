import pytest

from shared.config import REQUIRED_BY_FUNCTION, ConfigError, load_settings, settings_for

BASE = {"GOOGLE_CLOUD_PROJECT": "p", "TECHNICAL_FILES_BUCKET": "b", "ENTRA_CLIENT_ID": "c",
        "ENTRA_CLIENT_SECRET": "s", "CURSOR_KEY": "k" * 32, "RECEIPT_KEY": "r" * 32,
        "PORTAL_BASE_URL": "https://portal.example", "PORTAL_SESSION_KEY": "p" * 32}


@pytest.mark.parametrize("function", sorted(REQUIRED_BY_FUNCTION))
def test_each_function_names_the_first_missing_variable(function):
    for name in REQUIRED_BY_FUNCTION[function]:
        env = {k: v for k, v in BASE.items() if k != name}
        with pytest.raises(ConfigError, match=name):
            settings_for(function, env)
    assert settings_for(function, BASE).project == "p"


def test_defaults_and_parsing():
    settings = load_settings(environ={**BASE, "DEVICE_INACTIVITY_DAYS": "7", "GRAPH_RETRY_DEADLINE_SECONDS": "2.5"})
    assert settings.device_inactivity_days == 7 and settings.graph_retry_deadline_seconds == 2.5
    assert settings.deletion_topic == "deletion-requests" and settings.diagnostics_retention_days == 30
    assert settings.max_devices_per_tenant == 10000 and settings.entra_required_scope == "access_as_user"
    assert settings.deletion_initial_ops_per_second == 500 and settings.deletion_max_ops_per_second == 10000


@pytest.mark.parametrize("name, value", [("DEVICE_INACTIVITY_DAYS", "soon"), ("MAX_DEVICES_PER_TENANT", "0"),
                                         ("ENTRA_AUTHORITY_HOST", "http://login.example"),
                                         ("CURSOR_KEY", "short"), ("PORTAL_SESSION_KEY", "short"),
                                         ("PORTAL_BASE_URL", "http://portal.example"),
                                         ("PORTAL_BASE_URL", "https://portal.example/sub/path"),
                                         ("PORTAL_BASE_URL", "ftp://127.0.0.1")])
def test_malformed_values_fail_with_the_name_not_the_value(name, value):
    with pytest.raises(ConfigError) as error:
        load_settings(environ={**BASE, name: value})
    assert name in str(error.value) and value not in str(error.value)


@pytest.mark.parametrize("value", ["https://portal.example", "https://portal.example:8443/",
                                   "http://127.0.0.1:8085", "http://localhost:9000"])
def test_portal_base_url_is_an_https_origin_or_loopback_http(value):
    assert load_settings(environ={**BASE, "PORTAL_BASE_URL": value}).portal_base_url == value.rstrip("/")


def test_secrets_do_not_appear_in_repr():
    assert "p" * 32 not in repr(load_settings(environ=BASE))
    assert "k" * 32 not in repr(load_settings(environ=BASE))
    assert "r" * 32 not in repr(load_settings(environ=BASE))


def test_egress_allow_list_compares_scheme_host_and_port():
    settings = load_settings(environ={**BASE, "ENTRA_AUTHORITY_HOST": "https://127.0.0.1:9001",
                                      "GRAPH_BASE_URL": "https://127.0.0.1:9002/v1.0"})
    assert settings.allowed_egress == {("https", "127.0.0.1", 9001), ("https", "127.0.0.1", 9002)}


@pytest.mark.parametrize("function", sorted(REQUIRED_BY_FUNCTION))
def test_cold_start_fails_fast_naming_the_missing_variable(function):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_BY_FUNCTION[function]}
    env.update(FUNCTION_TARGET=function, GOOGLE_CLOUD_PROJECT="p")
    result = subprocess.run([sys.executable, "-c", "import main"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    missing = [name for name in REQUIRED_BY_FUNCTION[function] if name != "GOOGLE_CLOUD_PROJECT"][0]
    assert f"missing required environment variable {missing}" in result.stderr
