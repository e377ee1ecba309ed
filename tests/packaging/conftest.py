import sys
from pathlib import Path

# binaries.py lives beside the integration suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
