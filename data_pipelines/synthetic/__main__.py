"""`python -m data_pipelines.synthetic`: writes scenes as PNGs (see `main`)."""

from data_pipelines.synthetic import main

main()
