"""``python -m medchat``: the same command group as the ``medchat`` console script."""

from medchat.cli import main

if __name__ == "__main__":
    main()
