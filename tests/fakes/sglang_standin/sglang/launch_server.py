"""Stand-in for `python -m sglang.launch_server`: accepts SGLang's arguments, serves the fake server.

FAKE_SGLANG (JSON) sets the fake server's behaviour; FAKE_SGLANG_ARGV, if set, names
a file that receives the argument list, so tests see the exact command line.
"""

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from openai_server import Behaviour, serve  # noqa: E402

if __name__ == "__main__":
    if path := os.environ.get("FAKE_SGLANG_ARGV"):
        with open(path, "w") as f:
            json.dump(sys.argv[1:], f)
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-path", required=True)
    known, _ = parser.parse_known_args()
    options = json.loads(os.environ.get("FAKE_SGLANG", "{}"))
    asyncio.run(serve(Behaviour(host=known.host, port=known.port, **options)))
