"""Installs the network guard in every Python process of the test run (see netguard.py)."""

import netguard  # noqa: F401  (importing it installs the guard)
