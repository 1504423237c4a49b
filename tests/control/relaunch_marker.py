"""What a relaunch test's "training" command is: it writes where and how it was started."""

import json
import os
import sys

with open(sys.argv[1], "w") as out:
    json.dump({"cwd": os.getcwd(), "argv": sys.argv[1:], "executable": sys.executable,
               "relaunch_of": os.environ.get("MLOPS_HOOKS_RELAUNCH_OF"),
               "url": os.environ.get("MLOPS_HOOKS_URL"),
               "token": os.environ.get("MLOPS_HOOKS_TOKEN")}, out)
