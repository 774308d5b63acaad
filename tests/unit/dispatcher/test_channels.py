from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from pixelrelay.v1 import common_pb2
from pixelrelay_dev.upstreams import SIMULATOR_CHANNELS as DEV_CHANNELS
from pixelrelay_dispatcher import channels
from pixelrelay_dispatcher.channels import ConfigError

ENV = {"UPSTREAM_API_KEY": "sk-1", "OTHER_KEY": "sk-2"}
PRODUCTION_EXAMPLE = Path(__file__).parents[3] / "deploy/k8s/base/channels.yaml"

VALID = """
channels:
  primary: {base_url: "https://a.example/v1", model: gpt-image-2,
            capabilities: {max_n: 4, masks: true, formats: [png, webp]}}
  backup: {base_url: "https://b.example/v1", model: gpt-image-2-2026-04-21,
           api_key_env: OTHER_KEY}
routes:
  gpt-image-2: {channels: [primary, backup]}
  gpt-image-2-official:
    strategy: weighted
    channels: [{name: primary, weight: 3}, {name: backup, weight: 1}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    return path


def test_make_runs_file_is_valid_for_local_development_only() -> None:
    env = {"UPSTREAM_API_KEY": "x"}
    config = channels.load(DEV_CHANNELS, env=env, allow_loopback=True)
    assert set(config.routes) == {"gpt-image-2", "gpt-image-2-official"}
    with pytest.raises(ConfigError, match="is this machine"):
        channels.load(DEV_CHANNELS, env=env)


def test_the_production_example_is_valid() -> None:
    config = channels.load(PRODUCTION_EXAMPLE, env={"OPENAI_API_KEY": "sk-x"})
    assert set(config.routes) == {"gpt-image-2", "gpt-image-2-official"}
    assert all(c.base_url.startswith("https://") for c in config.channels.values())


def test_no_channel_file_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError) as caught:
        channels.load(None, env=ENV)
    assert "no channels configured: set CHANNELS_FILE" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8090/v1",
        "http://localhost/v1",
        "http://api.localhost/v1",
        "http://[::1]:80/v1",
        "http://0.0.0.0:80/v1",
        "http://127.9.9.9/v1",
    ],
)
def test_a_channel_on_this_machine_is_refused(tmp_path: Path, url: str) -> None:
    text = VALID.replace("https://a.example/v1", url)
    with pytest.raises(ConfigError, match="primary.base_url: .* is this machine"):
        channels.load(write(tmp_path, text), env=ENV)
    assert channels.load(write(tmp_path, text), env=ENV, allow_loopback=True)


def test_private_network_upstreams_are_allowed(tmp_path: Path) -> None:
    """A model served inside the cluster is a real upstream; only loopback is refused."""
    for url in ("http://10.0.0.7:8000/v1", "http://imagegen.models.svc:8000/v1"):
        assert channels.load(write(tmp_path, VALID.replace("https://a.example/v1", url)), env=ENV)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = (
        VALID.replace("model: gpt-image-2,", "model: gpt-image-2, colour: red,")
        .replace("https://b.example/v1", "http://localhost:9/v1")
        .replace("[primary, backup]", "[primary, ghost]")
    )
    with pytest.raises(ConfigError) as caught:
        channels.load(write(tmp_path, text), env={"UPSTREAM_API_KEY": "x"})
    message = str(caught.value)
    for problem in ("colour", "unknown channel 'ghost'", "OTHER_KEY is not set", "is this machine"):
        assert problem in message, message


def test_a_valid_file_with_env_overrides(tmp_path: Path) -> None:
    config = channels.load(
        write(tmp_path, VALID),
        env={
            **ENV,
            "CHANNEL_BACKUP_BASE_URL": "http://10.1.2.3:9/v1/",
            "CHANNEL_PRIMARY_MODEL": "m2",
        },
    )
    assert config.channels["backup"].base_url == "http://10.1.2.3:9/v1"
    assert config.channels["primary"].model == "m2"
    assert config.routes["gpt-image-2"].order(random.Random(1)) == ["primary", "backup"]


def test_weighted_routes_prefer_heavier_channels(tmp_path: Path) -> None:
    route = channels.load(write(tmp_path, VALID), env=ENV).routes["gpt-image-2-official"]
    rng = random.Random(7)
    firsts = Counter(route.order(rng)[0] for _ in range(4000))
    assert 0.70 < firsts["primary"] / 4000 < 0.80
    assert sorted(route.order(rng)) == ["backup", "primary"]  # everyone stays a fallback


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("channels: [", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        (
            VALID.replace("routes:\n  gpt-image-2: {channels: [primary, backup]}\n", "routes:\n"),
            "no route for gpt-image-2",
        ),
        (VALID.replace("[primary, backup]", "[primary, ghost]"), "unknown channel 'ghost'"),
        (VALID.replace("https://a.example/v1", "ftp://a"), "base_url must be an http(s) URL"),
        (VALID.replace("max_n: 4", "max_n: 40"), "max_n"),
        (VALID.replace("formats: [png, webp]", "formats: [gif]"), "formats"),
        (VALID.replace("model: gpt-image-2,", "model: gpt-image-2, colour: red,"), "colour"),
        (VALID.replace("weight: 3", "weight: 0"), "weight"),
        (
            VALID.replace("gpt-image-2-official:", "dall-e-3:"),
            "'dall-e-3' is no model of the catalog",
        ),
    ],
)
def test_invalid_files_are_refused_with_the_reason(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        channels.load(write(tmp_path, text), env=ENV)
    assert problem in str(caught.value)


def test_missing_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        channels.load(write(tmp_path, VALID), env={"UPSTREAM_API_KEY": "x"})
    assert "OTHER_KEY" in str(caught.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        channels.load(tmp_path / "nope.yaml", env=ENV)
    assert "cannot read" in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "mask", "why"),
    [
        ({"n": 4}, False, None),
        ({"n": 5}, False, "n=5 > 4"),
        ({"n": 1}, True, None),
        ({"n": 1, "output_format": "jpeg"}, False, "no jpeg"),
        ({"n": 1, "background": "transparent"}, False, "no transparency"),
        ({"n": 1, "width": 4000, "height": 4000}, False, "too large"),
    ],
)
def test_capabilities(tmp_path: Path, spec: dict[str, object], mask: bool, why: str | None) -> None:
    caps = channels.load(write(tmp_path, VALID), env=ENV).channels["primary"].capabilities
    full = common_pb2.ImageSpec(**{"width": 1024, "height": 1024, **spec})  # type: ignore[arg-type]
    assert caps is not None and caps.supports(full, mask=mask) == why


def test_a_channel_without_capabilities_takes_what_its_models_take(tmp_path: Path) -> None:
    loaded = channels.load(write(tmp_path, VALID), env=ENV)
    assert loaded.channels["backup"].capabilities is None  # none listed: no limits of its own


def test_a_channels_price_costs_its_usage_in_exact_millionths_of_a_dollar() -> None:
    price = channels.TokenPrice.model_validate(
        {"input_text": 5, "input_image": 10, "output_image": 40}
    )
    usage = common_pb2.Usage(
        input_tokens=30, input_text_tokens=20, input_image_tokens=10, output_tokens=4160
    )
    assert price.cost_micros(usage) == 20 * 5 + 10 * 10 + 4160 * 40
    # input the upstream did not split is text; half a millionth rounds to even
    assert price.cost_micros(common_pb2.Usage(input_tokens=7, output_tokens=0)) == 35
    odd = channels.TokenPrice.model_validate(
        {"input_text": "2.5", "input_image": 0, "output_image": 0}
    )
    assert odd.cost_micros(common_pb2.Usage(input_tokens=1)) == 2  # 2.5 → 2 (to even)
    assert odd.cost_micros(common_pb2.Usage(input_tokens=3)) == 8  # 7.5 → 8


AZURE = VALID.replace(
    "routes:",
    """  azure:
    provider: azure
    base_url: https://my-resource.openai.azure.com/
    deployment: gpt-image-2-east
    api_version: 2025-04-01-preview
    model: gpt-image-2
    api_key_env: AZURE_KEY
routes:""",
).replace("[primary, backup]", "[primary, azure, backup]")


def test_an_azure_channel_names_its_deployment_and_api_version(tmp_path: Path) -> None:
    config = channels.load(write(tmp_path, AZURE), env={**ENV, "AZURE_KEY": "az"})
    azure = config.channels["azure"]
    assert (azure.provider, azure.base_url, azure.deployment, azure.api_version) == (
        "azure",
        "https://my-resource.openai.azure.com",
        "gpt-image-2-east",
        "2025-04-01-preview",
    )
    assert config.channels["primary"].provider == "openai"  # the default
    assert config.routes["gpt-image-2"].order(random.Random(1)) == ["primary", "azure", "backup"]


def test_azure_fields_are_overridden_from_the_environment(tmp_path: Path) -> None:
    config = channels.load(
        write(tmp_path, AZURE),
        env={
            **ENV,
            "AZURE_KEY": "az",
            "CHANNEL_AZURE_DEPLOYMENT": "other",
            "CHANNEL_AZURE_API_VERSION": "2025-06-01",
            "CHANNEL_AZURE_BASE_URL": "https://other.openai.azure.com",
            "CHANNEL_BACKUP_PROVIDER": "azure",
            "CHANNEL_BACKUP_BASE_URL": "https://backup.openai.azure.com",
            "CHANNEL_BACKUP_DEPLOYMENT": "img",
            "CHANNEL_BACKUP_API_VERSION": "2025-04-01-preview",
        },
    )
    azure, backup = config.channels["azure"], config.channels["backup"]
    assert (azure.deployment, azure.api_version, azure.base_url) == (
        "other",
        "2025-06-01",
        "https://other.openai.azure.com",
    )
    assert (backup.provider, backup.deployment) == ("azure", "img")


def test_provider_problems_are_listed_with_the_others(tmp_path: Path) -> None:
    text = (
        AZURE.replace("    deployment: gpt-image-2-east\n", "")
        .replace("api_version: 2025-04-01-preview", "api_version: latest")
        .replace("my-resource.openai.azure.com/", "my-resource.openai.azure.com/openai")
        .replace("model: gpt-image-2,", "model: gpt-image-2, deployment: d, colour: red,")
        .replace("api_key_env: OTHER_KEY}", "api_key_env: OTHER_KEY, provider: bedrock}")
    )
    with pytest.raises(ConfigError) as caught:
        channels.load(write(tmp_path, text), env={**ENV, "AZURE_KEY": "az"})
    message = str(caught.value)
    for problem in (
        "channels.azure.deployment: Value error, an azure channel needs its deployment",
        "channels.azure.api_version: Value error, not a valid api_version",
        "channels.azure.base_url: Value error, an azure channel's base_url is the resource "
        "endpoint, without a path",
        "channels.primary.deployment: Value error, deployment is for azure channels only",
        "channels.primary.colour",
        "channels.backup.provider: Input should be 'openai' or 'azure'",
    ):
        assert problem in message, message


def test_an_azure_channel_without_api_version_is_refused(tmp_path: Path) -> None:
    text = AZURE.replace("    api_version: 2025-04-01-preview\n", "")
    with pytest.raises(ConfigError, match="azure.api_version: .*needs its api_version"):
        channels.load(write(tmp_path, text), env={**ENV, "AZURE_KEY": "az"})


def test_the_operations_guides_azure_example_is_valid(tmp_path: Path) -> None:
    guide = (Path(__file__).parents[3] / "docs/operations.md").read_text()
    section = guide.split("### Channels", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = channels.load(
        write(tmp_path, example), env={"OPENAI_API_KEY": "sk", "AZURE_OPENAI_API_KEY": "az"}
    )
    assert [c.provider for c in config.channels.values()] == ["openai", "azure"]
