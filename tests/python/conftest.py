"""The helper under test is harness/python/etrn_harness.py, loaded as a test suite would."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "harness" / "python"))

pytest_plugins = ["etrn_harness"]
