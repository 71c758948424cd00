"""The packaged `<name>_metadata.yaml`: it overrides the code; gen_metadata writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from hiagent_plugin_sdk import HttpException
from hiagent_plugin_sdk.gen_metadata import main as gen_metadata_main
from hiagent_plugin_sdk.utils import gen_metadata

from tests.sdk.conftest import WritePackage, write_dist_info

PLUGIN_SOURCE = """
    from typing import Annotated
    from pydantic import Field
    from hiagent_plugin_sdk import BasePlugin, set_meta

    @set_meta(cn_name="时间工具", en_name="Time")
    class TimePlugin(BasePlugin):
        '''Tells the time.'''
        hiagent_tools = ["now"]

        def now(self, tz: Annotated[str, Field(description="time zone")] = "UTC") -> str:
            '''The current time.'''
            return f"now in {tz}"

        def now_v2(self, tz: str = "UTC") -> str:
            return f"v2 now in {tz}"

        async def now_stream(self, tz: str = "UTC"):
            yield f"tick {tz}"
"""

PACKAGED_YAML = """
    meta_version: v1
    name: 时间工具
    category: Productivity
    description: 来自 YAML 的描述
    icon: https://example.invalid/stale.png
    metadata_path: 时间工具_metadata.yaml
    labels:
      name_en: Time (yaml)
      name_zh_hant: 時間工具
    config_schema: {}
    package_info: {name: stale, version: 0.0.1}
    tools:
      current_time:
        name: current_time
        description: 当前时间
        labels: {name_zh_hans: 当前时间}
        input_schema: {title: InModel, type: object, properties: {tz: {type: string}}}
        output_schema: {}
        func_name: now_v2
        stream_func_name: now_stream
        runtime_features: [stream]
      legacy:
        name: legacy
        description: no func_name given
"""


def test_packaged_yaml_decides_the_tools_and_labels(write_package: WritePackage) -> None:
    module = write_package(
        "hiagent_plugin_time_a",
        {"__init__.py": PLUGIN_SOURCE, "时间工具_metadata.yaml": PACKAGED_YAML},
    )
    meta = module.TimePlugin.get_metadata()
    assert list(meta.tools) == ["current_time", "legacy"]
    assert meta.category == "Productivity"
    assert meta.description == "来自 YAML 的描述"
    assert meta.labels.name_zh_hant == "時間工具"
    tool = meta.tools["current_time"]
    assert tool.func_name == "now_v2"
    assert tool.stream_func_name == "now_stream"
    assert tool.input_schema["properties"] == {"tz": {"type": "string"}}
    assert meta.tools["legacy"].func_name == "legacy"


def test_packaged_yaml_icon_and_package_info_are_resolved_at_run_time(
    write_package: WritePackage,
) -> None:
    module = write_package(
        "hiagent_plugin_time_b",
        {"__init__.py": PLUGIN_SOURCE, "时间工具_metadata.yaml": PACKAGED_YAML},
    )
    meta = module.TimePlugin.get_metadata()
    assert meta.icon == ""
    assert meta.package_info.name == "hiagent_plugin_time_b"


@pytest.mark.anyio
async def test_packaged_func_name_picks_the_method_and_its_signature_validates(
    write_package: WritePackage,
) -> None:
    module = write_package(
        "hiagent_plugin_time_c",
        {"__init__.py": PLUGIN_SOURCE, "时间工具_metadata.yaml": PACKAGED_YAML},
    )
    assert await module.TimePlugin.run_plugin_tool("current_time", {"tz": "CST"}, None) == (
        "v2 now in CST"
    )
    with pytest.raises(HttpException) as caught:
        await module.TimePlugin.run_plugin_tool("current_time", {"tz": 8}, None)
    assert caught.value.code == "InvalidToolInput"
    with pytest.raises(HttpException) as missing:
        await module.TimePlugin.run_plugin_tool("legacy", {}, None)
    assert missing.value.code == "ToolNotFound"
    stream = module.TimePlugin.run_plugin_tool_stream("current_time", {"tz": "CST"}, None)
    assert [item async for item in stream] == ["tick CST"]


def test_malformed_packaged_yaml_falls_back_to_the_code(write_package: WritePackage) -> None:
    module = write_package(
        "hiagent_plugin_time_d",
        {"__init__.py": PLUGIN_SOURCE, "时间工具_metadata.yaml": "tools: [this is: not: valid"},
    )
    assert list(module.TimePlugin.get_metadata().tools) == ["now"]


def test_gen_metadata_writes_yaml_that_get_metadata_reads_back(
    write_package: WritePackage,
) -> None:
    module = write_package("hiagent_plugin_time_e", {"__init__.py": PLUGIN_SOURCE})
    from_code = module.TimePlugin.get_metadata().model_dump(mode="json")
    path = gen_metadata(module.TimePlugin)
    assert path == Path(str(module.__file__)).resolve().parent / "时间工具_metadata.yaml"
    written: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert written["tools"]["now"]["input_schema"] == from_code["tools"]["now"]["input_schema"]
    assert written["name"] == "时间工具"
    assert "时间工具" in path.read_text(encoding="utf-8")  # unicode kept readable


def test_gen_metadata_keeps_hand_written_labels(
    write_package: WritePackage, tmp_path: Path
) -> None:
    module = write_package("hiagent_plugin_time_f", {"__init__.py": PLUGIN_SOURCE})
    target = tmp_path / "meta.yaml"
    target.write_text(
        "labels: {name_zh_hant: 時間工具, name_en: Old}\n"
        "tools: {now: {labels: {name_zh_hant: 現在}}}\n",
        encoding="utf-8",
    )
    gen_metadata(module.TimePlugin, target)
    written = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert written["labels"]["name_zh_hant"] == "時間工具"
    assert written["labels"]["name_en"] == "Time"  # the code's own label wins
    assert written["tools"]["now"]["labels"]["name_zh_hant"] == "現在"


def test_gen_metadata_main_writes_every_entry_point_of_a_distribution(
    write_package: WritePackage, site_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = write_package("hiagent_plugin_time_g", {"__init__.py": PLUGIN_SOURCE})
    write_dist_info(
        site_dir,
        "hiagent-plugin-time-g",
        "0.2.0",
        "[hiagent.plugins]\n时间工具 = hiagent_plugin_time_g:TimePlugin\n",
    )
    assert gen_metadata_main(["gen_metadata", "hiagent-plugin-time-g"]) == 0
    assert (Path(str(module.__file__)).parent / "时间工具_metadata.yaml").is_file()
    assert "时间工具" in capsys.readouterr().out


def test_gen_metadata_main_without_a_name_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert gen_metadata_main(["gen_metadata"]) == 2
    assert "usage" in capsys.readouterr().err
