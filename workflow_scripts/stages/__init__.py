"""Entry points that Snakemake rules call: parse arguments, do I/O, call the library."""
