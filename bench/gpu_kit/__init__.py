"""The device kit: everything the first minutes on a lent GPU machine need.

``prepare`` (here) downloads the wheels the GPU machine lacks; ``run`` (there, or on
CPU with the tiny model as a rehearsal) measures the GPU path in deadline-bound stages,
each writing its JSON as soon as it ends; ``report`` turns those files into the GPU
table of docs/PERFORMANCE.md. bench/README.md has the two commands.
"""
