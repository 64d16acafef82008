"""The migrations, one module per revision (``NNNN_what.py``); Alembic loads them by path, never by import.

This file only makes ``versions`` a package, so that setuptools ships the scripts with opsconsole
(Alembic skips ``__init__.py`` when it reads the directory).
"""
