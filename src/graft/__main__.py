"""``python -m graft``: the same as the ``graft`` command."""

from graft.cli import main

if __name__ == "__main__":
    main()
