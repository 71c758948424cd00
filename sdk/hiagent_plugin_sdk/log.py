"""`secretLogger`: the logger for records that may contain secrets, off unless enabled.

It is the logger named `sensitive`; it stays disabled unless the plugin process runs with
`HIAGENT_SECRET_LOG=1`. Nothing else about logging is configured by the SDK.
"""

from __future__ import annotations

import logging
import os
from typing import Final

ENV_SECRET_LOG: Final = "HIAGENT_SECRET_LOG"
SECRET_LOGGER_NAME: Final = "sensitive"

secretLogger = logging.getLogger(SECRET_LOGGER_NAME)
secretLogger.disabled = os.environ.get(ENV_SECRET_LOG) != "1"
