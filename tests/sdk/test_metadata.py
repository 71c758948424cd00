"""Metadata built from plugin code: shape, field order, schemas, labels, caching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from hiagent_plugin_sdk import BasePlugin, SecretField, set_meta
from hiagent_plugin_sdk.schema import Metadata
from hiagent_plugin_sdk.utils import get_fn_schema
from pydantic import Field

from tests.sdk.conftest import WritePackage, write_dist_info
from tests.sdk.sample_plugins import ChildPlugin, PlainPlugin, WeatherPlugin

METADATA_KEYS = [
    "meta_version",
    "name",
    "category",
    "description",
    "icon",
    "metadata_path",
    "labels",
    "config_schema",
    "package_info",
    "tools",
]
TOOL_KEYS = [
    "name",
    "description",
    "labels",
    "input_schema",
    "output_schema",
    "func_name",
    "stream_func_name",
    "runtime_features",
]
LABEL_KEYS = [
    "name_en",
    "name_zh_hans",
    "name_zh_hant",
    "description_en",
    "description_zh_hans",
    "description_zh_hant",
]


def dumped(plugin: type[BasePlugin]) -> dict[str, Any]:
    result: dict[str, Any] = plugin.get_metadata().model_dump(mode="json")
    return result


def ref_of(prop: dict[str, Any]) -> str:
    """The `$ref` of a property; pydantic before 2.9 wraps a ref with siblings in `allOf`."""
    ref: str = prop["$ref"] if "$ref" in prop else prop["allOf"][0]["$ref"]
    return ref


def test_metadata_fields_come_in_the_documented_order() -> None:
    meta = dumped(WeatherPlugin)
    assert list(meta) == METADATA_KEYS
    assert list(meta["labels"]) == LABEL_KEYS
    assert list(meta["package_info"]) == ["name", "version"]
    for tool in meta["tools"].values():
        assert list(tool) == TOOL_KEYS
        assert list(tool["labels"]) == LABEL_KEYS


def test_plugin_header_comes_from_set_meta_category_and_docstring() -> None:
    meta = dumped(WeatherPlugin)
    description = "Looks up the weather.\n\nSecond paragraph of the description."
    assert meta["meta_version"] == "v1"
    assert meta["name"] == "天气"
    assert meta["category"] == "LifeAssistant"
    assert meta["description"] == description
    assert meta["metadata_path"] == "天气_metadata.yaml"
    assert meta["labels"] == {
        "name_en": "Weather",
        "name_zh_hans": "天气",
        "name_zh_hant": None,
        "description_en": description,
        "description_zh_hans": description,
        "description_zh_hant": None,
    }
    assert meta["package_info"] == {"name": "tests", "version": "0.0.0"}


def test_plugin_without_set_meta_is_named_after_its_class() -> None:
    meta = dumped(PlainPlugin)
    assert meta["name"] == "PlainPlugin"
    assert meta["metadata_path"] == "PlainPlugin_metadata.yaml"
    assert meta["category"] == ""
    assert meta["description"] == ""


def test_config_schema_is_empty_without_an_own_init() -> None:
    assert dumped(PlainPlugin)["config_schema"] == {}


def test_config_schema_lists_init_params_and_marks_secrets() -> None:
    assert dumped(WeatherPlugin)["config_schema"] == {
        "title": "InModel",
        "type": "object",
        "properties": {
            "app_id": {"title": "App Id", "type": "string", "description": "the application id"},
            "token": {
                "title": "token",
                "type": "string",
                "description": "API token",
                "x-hiagent-secret": True,
            },
            "region": {"title": "Region", "type": "string", "default": "cn"},
        },
        "required": ["app_id", "token"],
    }


def test_tool_input_schema_has_descriptions_and_defaults() -> None:
    tool = dumped(WeatherPlugin)["tools"]["forecast"]
    assert tool["input_schema"] == {
        "title": "InModel",
        "type": "object",
        "properties": {
            "city": {"title": "City", "type": "string", "description": "city name"},
            "days": {
                "title": "Days",
                "type": "integer",
                "description": "how many days",
                "default": 1,
            },
        },
        "required": ["city"],
    }
    assert tool["description"] == "Forecast the weather for a city."
    assert tool["func_name"] == "forecast"
    assert tool["stream_func_name"] is None
    assert tool["runtime_features"] == []


def test_output_schema_wraps_the_return_type_with_the_error_object() -> None:
    schema = dumped(WeatherPlugin)["tools"]["forecast"]["output_schema"]
    assert schema["title"] == "OutputRespModel"
    assert ref_of(schema["properties"]["data"]) == "#/$defs/OutModel"
    assert ref_of(schema["properties"]["error"]) == "#/$defs/HttpError"
    out_model = schema["$defs"]["OutModel"]
    assert ref_of(out_model) == "#/$defs/Weather"
    assert (out_model["title"], out_model["description"]) == ("OutModel", "the forecast")
    assert list(schema["$defs"]["HttpError"]["properties"]) == [
        "code",
        "message",
        "data",
        "http_code",
    ]


def test_unannotated_return_is_a_null_out_model() -> None:
    schema = dumped(PlainPlugin)["tools"]["ping_tool"]["output_schema"]
    assert schema["$defs"]["OutModel"] == {"title": "OutModel", "type": "null"}


def test_var_kwargs_allow_additional_properties() -> None:
    schema = dumped(WeatherPlugin)["tools"]["describe"]["input_schema"]
    assert schema["additionalProperties"] is True
    assert schema["properties"] == {}


def test_keyword_only_params_and_model_params_are_in_the_schema() -> None:
    schema = dumped(WeatherPlugin)["tools"]["where"]["input_schema"]
    assert schema["properties"]["point"] == {"$ref": "#/$defs/Point"}
    assert schema["properties"]["label"] == {"title": "Label", "type": "string", "default": "here"}
    assert schema["required"] == ["point"]
    assert "additionalProperties" not in schema


def test_static_and_class_methods_do_not_expose_self_or_cls() -> None:
    tools = dumped(WeatherPlugin)["tools"]
    assert list(tools["shout"]["input_schema"]["properties"]) == ["text"]
    assert "cls" not in tools["describe"]["input_schema"]["properties"]


def test_stream_tool_has_stream_func_and_runtime_features() -> None:
    tool = dumped(WeatherPlugin)["tools"]["chat"]
    assert tool["stream_func_name"] == "chat_stream"
    assert tool["runtime_features"] == ["agent_intention", "stream"]
    assert dumped(PlainPlugin)["tools"]["count"]["runtime_features"] == ["stream"]


def test_tools_keep_the_order_of_hiagent_tools() -> None:
    assert list(dumped(WeatherPlugin)["tools"]) == list(WeatherPlugin.hiagent_tools)


def test_tool_labels_use_the_tool_name_and_docstring() -> None:
    labels = dumped(WeatherPlugin)["tools"]["chat"]["labels"]
    assert labels["name_en"] == labels["name_zh_hans"] == "chat"
    assert labels["description_en"] == labels["description_zh_hans"] == "Chat about the weather."
    assert labels["name_zh_hant"] is None


def test_metadata_is_cached_per_class_and_not_inherited() -> None:
    assert WeatherPlugin.get_metadata() is WeatherPlugin.get_metadata()
    parent = PlainPlugin.get_metadata()  # cached on the parent first
    child = ChildPlugin.get_metadata()
    assert child is not parent
    assert list(child.tools) == ["count"]
    assert child.name == "ChildPlugin"


def test_metadata_is_a_pydantic_model() -> None:
    assert isinstance(WeatherPlugin.get_metadata(), Metadata)


def test_var_args_tool_is_refused_naming_the_method() -> None:
    class Starry(BasePlugin):
        hiagent_tools = ("spread",)

        def spread(self, *items: int) -> int:
            return len(items)

    with pytest.raises(TypeError, match=r"Starry\.spread.*\*items"):
        Starry.get_metadata()


def test_unannotated_parameter_is_refused_naming_it() -> None:
    class Loose(BasePlugin):
        hiagent_tools = ("guess",)

        def guess(self, value) -> int:  # type: ignore[no-untyped-def]
            return 1

    with pytest.raises(TypeError, match=r"Loose\.guess.*'value'"):
        Loose.get_metadata()


def test_listed_tool_without_method_is_refused() -> None:
    class Missing(BasePlugin):
        hiagent_tools = ("ghost",)

    with pytest.raises(TypeError, match="ghost"):
        Missing.get_metadata()


def test_params_named_like_basemodel_attributes_still_work() -> None:
    class Clashing(BasePlugin):
        hiagent_tools = ("fetch",)

        def fetch(self, json: str, schema: int = 0, model_name: str = "m") -> str:
            return json

    schema = dumped(Clashing)["tools"]["fetch"]["input_schema"]
    assert list(schema["properties"]) == ["json", "schema", "model_name"]
    assert schema["properties"]["json"]["title"] == "Json"


def test_init_of_a_user_base_class_defines_the_config() -> None:
    class Base(BasePlugin):
        def __init__(self, key: Annotated[str, SecretField()]) -> None:
            self.key = key

    @set_meta(cn_name="派生")
    class Derived(Base):
        hiagent_tools = ()

    schema = dumped(Derived)["config_schema"]
    assert schema["properties"]["key"]["x-hiagent-secret"] is True


def test_secret_field_keeps_other_schema_extras() -> None:
    class Extra(BasePlugin):
        hiagent_tools = ()

        def __init__(
            self, pw: Annotated[str, SecretField(json_schema_extra={"format": "password"})] = ""
        ) -> None:
            self.pw = pw

    prop = dumped(Extra)["config_schema"]["properties"]["pw"]
    assert prop["x-hiagent-secret"] is True
    assert prop["format"] == "password"
    assert prop["default"] == ""


def test_package_info_reports_the_installed_distribution_version(
    write_package: WritePackage, site_dir: Path
) -> None:
    write_dist_info(site_dir, "hiagent-plugin-versioned", "1.4.2")
    module = write_package(
        "hiagent_plugin_versioned",
        {
            "__init__.py": """
                from hiagent_plugin_sdk import BasePlugin

                class Versioned(BasePlugin):
                    hiagent_tools = []
            """
        },
    )
    meta = module.Versioned.get_metadata()
    assert meta.package_info.model_dump() == {
        "name": "hiagent_plugin_versioned",
        "version": "1.4.2",
    }


def test_icon_is_a_file_uri_of_icon_png_beside_the_module(write_package: WritePackage) -> None:
    module = write_package(
        "hiagent_plugin_iconic",
        {
            "__init__.py": "from hiagent_plugin_iconic.plugin import Iconic\n",
            "plugin.py": """
                from hiagent_plugin_sdk import BasePlugin

                class Iconic(BasePlugin):
                    hiagent_tools = []
            """,
            "icon.png": "not really a png",
        },
    )
    icon = module.Iconic.get_metadata().icon
    assert icon.startswith("file://")
    assert (
        Path(icon.removeprefix("file://"))
        == Path(str(module.__file__)).resolve().parent / "icon.png"
    )


def test_icon_is_empty_when_there_is_no_icon_png() -> None:
    assert PlainPlugin.get_metadata().icon == ""


def test_get_fn_schema_returns_the_input_and_output_models() -> None:
    def add(
        a: Annotated[int, Field(description="param a")],
        b: Annotated[int, Field(description="param b")] = 1,
    ) -> int:
        return a + b

    inputs, output = get_fn_schema(add)
    assert inputs.model_json_schema() == {
        "title": "InModel",
        "type": "object",
        "properties": {
            "a": {"title": "A", "type": "integer", "description": "param a"},
            "b": {"title": "B", "type": "integer", "description": "param b", "default": 1},
        },
        "required": ["a"],
    }
    assert output.model_json_schema() == {"title": "OutModel", "type": "integer"}


def test_get_fn_schema_skips_self_for_methods_but_not_for_static_methods() -> None:
    class Holder:
        def method(self, a: int) -> None:
            return None

        @staticmethod
        def static(a: int) -> None:
            return None

    method_in, _ = get_fn_schema(Holder.method, Holder)
    static_in, _ = get_fn_schema(Holder.static, Holder)
    assert list(method_in.model_json_schema()["properties"]) == ["a"]
    assert list(static_in.model_json_schema()["properties"]) == ["a"]


def test_get_fn_schema_can_require_a_return_annotation() -> None:
    def loose(a: int):  # type: ignore[no-untyped-def]
        return a

    with pytest.raises(TypeError, match="return"):
        get_fn_schema(loose, ignore_return_not_set=False)
