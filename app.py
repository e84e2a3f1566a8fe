"""Start Parley: ``python app.py`` (``--help`` lists the options)."""

import os
import sys

from chat.config import load_settings
from chat.server import run

if __name__ in {"__main__", "__mp_main__"}:
    # Under NiceGUI's test simulation this file is executed by pytest: settings then come from the environment only.
    simulated = os.environ.get("NICEGUI_USER_SIMULATION") == "true"
    run(load_settings(None if simulated else sys.argv[1:]))
