"""segjax command line: python run.py --config=configs/X.py [--config.a.b=v ...] --workdir=DIR.

All of it lives in segjax/main.py (also installed as the `segjax` command)."""

from segjax import main

if __name__ == "__main__":
    main.run()
