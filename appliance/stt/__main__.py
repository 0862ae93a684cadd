"""`python -m appliance.stt install-vosk-model SRC DEST [--sha256 X]` | `info ...`."""

import sys

from appliance.stt.installer import main

sys.exit(main())
