"""`python -m factory`: the same entry point as the `factory` command."""

from factory.cli import main

if __name__ == "__main__":
    main()
