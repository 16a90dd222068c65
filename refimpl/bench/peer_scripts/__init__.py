"""Standalone peer measurement scripts, run by refimpl.bench.peers under each peer's own venv.

Each script reads a config JSON on stdin and prints one JSON document on stdout. They never
import refimpl (they run with ``python -I`` in a venv that does not have it); this file only
marks the folder as part of the package so the scripts ship with it.
"""
