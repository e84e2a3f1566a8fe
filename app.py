"""Start Parley: ``python app.py`` (``--help`` lists the options); ``python app.py user add NAME [--admin]`` creates
a user (see ``chat/cli.py``)."""

import os
import sys

from chat.cli import main

if __name__ in {"__main__", "__mp_main__"}:
    # Under NiceGUI's test simulation this file is executed by pytest: settings then come from the environment only.
    simulated = os.environ.get("NICEGUI_USER_SIMULATION") == "true"
    main(None if simulated else sys.argv[1:])
