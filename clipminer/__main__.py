"""`python -m clipminer` and the ``clipminer`` command: the command-line interface.

Ctrl-C is the user's to press at any moment, including while the interface is still
being imported: then the command ends quietly with exit code 130, as it does later on.
"""

import sys


def main() -> None:
    try:
        from clipminer.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    app(prog_name="clipminer")


if __name__ == "__main__":
    main()
