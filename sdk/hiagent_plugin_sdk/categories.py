"""`BuiltinCategory`: the plugin categories HiAgent knows by name (any string is accepted)."""

from __future__ import annotations

from typing import Final


class BuiltinCategory:
    """Each attribute's value is its own name: `hiagent_category = BuiltinCategory.News`."""

    WebSearch: Final = "WebSearch"
    Productivity: Final = "Productivity"
    TextProcessing: Final = "TextProcessing"
    ImageProcessing: Final = "ImageProcessing"
    AudioVideo: Final = "AudioVideo"
    LifeAssistant: Final = "LifeAssistant"
    Education: Final = "Education"
    News: Final = "News"
    Entertainment: Final = "Entertainment"
    Logistics: Final = "Logistics"
