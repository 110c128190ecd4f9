"""`python -m rladder.core ...` is the `rladder` launcher."""

from rladder.core.cli import main

if __name__ == "__main__":
    main()
