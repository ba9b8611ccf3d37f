"""Print one of the README's set-up commands, so CI runs exactly what the README says.

The commands follow the markers <!-- start-command --> and <!-- test-command -->.
"""

import re
import sys
from pathlib import Path

which = sys.argv[1]
text = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
match = re.search(rf"<!-- {which}-command -->\s*```(?:sh|bash)?\n(.*?)```", text, re.S)
if not match:
    sys.exit(f"README.md has no <!-- {which}-command --> block")
print(" ".join(line.strip().rstrip("\\") for line in match.group(1).splitlines()).strip())
