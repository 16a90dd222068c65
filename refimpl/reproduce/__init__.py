"""The tables of the papers, regenerated (top layer): one module per table, run by `refimpl reproduce TABLE`.

Each module has ``add_arguments(parser)`` and ``run(args) -> int``; refimpl/cli/reproduce.py lists
the tables and builds their parsers.
"""
