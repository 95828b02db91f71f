"""``python -m memstream``: the same command line as the ``memstream`` script."""

from memstream.cli import main

if __name__ == "__main__":
    main()
