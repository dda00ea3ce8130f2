"""Shared test setup: tests/ on sys.path (for torch_reference), CPU threads."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
